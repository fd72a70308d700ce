import assert from "node:assert/strict";
import { UrlSigner } from "../../src/security/url_signature.ts";

const SECRET = "test-body-signing-secret-0123456789";
const TTL_SECONDS = 600;
/** A fixed clock so expiry is decided by arithmetic, never by wall time. */
const NOW_MS = 1_700_000_000_000;
const BODY = "eyJzIjoifn5+Pz8/In0=";

Deno.test("UrlSigner", async (t) => {
  const signer = await UrlSigner.create(SECRET, { ttlSeconds: TTL_SECONDS });

  await t.step("sign then verify succeeds for both purposes", async () => {
    for (const purpose of ["answer", "ws"] as const) {
      const { exp, sig } = await signer.sign(purpose, BODY, NOW_MS);
      assert.deepEqual(await signer.verify(purpose, BODY, exp, sig, NOW_MS), { ok: true });
    }
    const empty = await signer.sign("answer", "", NOW_MS);
    assert.deepEqual(await signer.verify("answer", "", empty.exp, empty.sig, NOW_MS), {
      ok: true,
    });
  });

  await t.step("exp is the TTL after now, in unix seconds", async () => {
    const { exp } = await signer.sign("answer", BODY, NOW_MS + 999);
    assert.equal(exp, String(NOW_MS / 1000 + TTL_SECONDS));
  });

  await t.step("signing is deterministic for the same inputs", async () => {
    const a = await signer.sign("ws", BODY, NOW_MS);
    const b = await signer.sign("ws", BODY, NOW_MS);
    assert.deepEqual(a, b);
  });

  await t.step("sig is URL-safe base64 of 32 bytes", async () => {
    for (const body of [BODY, "", "x".repeat(5000), "Zoë 日本"]) {
      const { sig } = await signer.sign("answer", body, NOW_MS);
      assert.match(sig, /^[A-Za-z0-9_-]{43}$/);
      assert.doesNotMatch(sig, /[+/=]/);
    }
  });

  await t.step("purposes are not interchangeable", async () => {
    const answer = await signer.sign("answer", BODY, NOW_MS);
    assert.deepEqual(await signer.verify("ws", BODY, answer.exp, answer.sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
    const ws = await signer.sign("ws", BODY, NOW_MS);
    assert.notEqual(ws.sig, answer.sig);
    assert.deepEqual(await signer.verify("answer", BODY, ws.exp, ws.sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
  });

  await t.step("an edited body is forged", async () => {
    const { exp, sig } = await signer.sign("answer", BODY, NOW_MS);
    for (const edited of [BODY + "A", BODY.slice(1), BODY.replace("+", "-"), ""]) {
      assert.deepEqual(await signer.verify("answer", edited, exp, sig, NOW_MS), {
        ok: false,
        reason: "forged",
      }, edited);
    }
  });

  await t.step("an edited exp is forged, even when it is in the future", async () => {
    const { exp, sig } = await signer.sign("answer", BODY, NOW_MS);
    const later = String(Number(exp) + 86_400);
    assert.deepEqual(await signer.verify("answer", BODY, later, sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
    // A leading zero keeps the number but changes the signed text.
    assert.deepEqual(await signer.verify("answer", BODY, `0${exp}`, sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
  });

  await t.step("expired once now passes exp", async () => {
    const { exp, sig } = await signer.sign("ws", BODY, NOW_MS);
    const expMs = Number(exp) * 1000;
    assert.deepEqual(await signer.verify("ws", BODY, exp, sig, expMs), { ok: true });
    assert.deepEqual(await signer.verify("ws", BODY, exp, sig, expMs + 1), {
      ok: false,
      reason: "expired",
    });
    assert.deepEqual(await signer.verify("ws", BODY, exp, sig, expMs + 86_400_000), {
      ok: false,
      reason: "expired",
    });
  });

  await t.step("missing exp or sig", async () => {
    const { exp, sig } = await signer.sign("answer", BODY, NOW_MS);
    const missing = { ok: false, reason: "missing" };
    assert.deepEqual(await signer.verify("answer", BODY, undefined, sig, NOW_MS), missing);
    assert.deepEqual(await signer.verify("answer", BODY, exp, undefined, NOW_MS), missing);
    assert.deepEqual(await signer.verify("answer", BODY, undefined, undefined, NOW_MS), missing);
    assert.deepEqual(await signer.verify("answer", BODY, "", sig, NOW_MS), missing);
    assert.deepEqual(await signer.verify("answer", BODY, exp, "", NOW_MS), missing);
  });

  await t.step("malformed sig or exp", async () => {
    const { exp, sig } = await signer.sign("answer", BODY, NOW_MS);
    const malformed = { ok: false, reason: "malformed" };
    const badSigs = [
      sig.slice(0, -1), // too short
      sig + "A", // too long
      sig + "=", // padded
      sig.slice(0, -1) + "+", // standard alphabet
      sig.slice(0, -1) + "/",
      sig.slice(0, -1) + "!",
      "A".repeat(86), // hex-length junk
    ];
    for (const bad of badSigs) {
      assert.deepEqual(await signer.verify("answer", BODY, exp, bad, NOW_MS), malformed, bad);
    }
    for (const badExp of ["abc", "-1", "1.5", "1e10", " 1", "1234567890123"]) {
      assert.deepEqual(await signer.verify("answer", BODY, badExp, sig, NOW_MS), malformed, badExp);
    }
  });

  await t.step("a well-formed but wrong sig is forged", async () => {
    const { exp } = await signer.sign("answer", BODY, NOW_MS);
    assert.deepEqual(await signer.verify("answer", BODY, exp, "A".repeat(43), NOW_MS), {
      ok: false,
      reason: "forged",
    });
  });

  await t.step("a different secret is forged", async () => {
    const other = await UrlSigner.create(SECRET + "x", { ttlSeconds: TTL_SECONDS });
    const { exp, sig } = await other.sign("answer", BODY, NOW_MS);
    assert.deepEqual(await signer.verify("answer", BODY, exp, sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
  });

  await t.step("derive: true keys differently from the raw secret", async () => {
    const derived = await UrlSigner.create(SECRET, { ttlSeconds: TTL_SECONDS, derive: true });
    const raw = await signer.sign("answer", BODY, NOW_MS);
    const fromDerived = await derived.sign("answer", BODY, NOW_MS);
    assert.equal(fromDerived.exp, raw.exp);
    assert.notEqual(fromDerived.sig, raw.sig);
    assert.deepEqual(
      await signer.verify("answer", BODY, fromDerived.exp, fromDerived.sig, NOW_MS),
      {
        ok: false,
        reason: "forged",
      },
    );
    assert.deepEqual(await derived.verify("answer", BODY, raw.exp, raw.sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
  });

  await t.step("derived keys are deterministic across signers", async () => {
    // Two server instances sharing TELNYX_API_KEY must accept each other's URLs.
    const a = await UrlSigner.create(SECRET, { ttlSeconds: TTL_SECONDS, derive: true });
    const b = await UrlSigner.create(SECRET, { ttlSeconds: TTL_SECONDS, derive: true });
    const fromA = await a.sign("ws", BODY, NOW_MS);
    const fromB = await b.sign("ws", BODY, NOW_MS);
    assert.deepEqual(fromA, fromB);
    assert.deepEqual(await b.verify("ws", BODY, fromA.exp, fromA.sig, NOW_MS), { ok: true });
    assert.deepEqual(await a.verify("ws", BODY, fromB.exp, fromB.sig, NOW_MS), { ok: true });
  });

  await t.step("the TTL is not part of the key", async () => {
    // A signer with another TTL still verifies: only exp/sig in the URL matter.
    const longer = await UrlSigner.create(SECRET, { ttlSeconds: TTL_SECONDS * 10 });
    const { exp, sig } = await longer.sign("answer", BODY, NOW_MS);
    assert.deepEqual(await signer.verify("answer", BODY, exp, sig, NOW_MS), { ok: true });
  });
});
