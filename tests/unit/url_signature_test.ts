import assert from "node:assert/strict";
import {
  CALLBACK_URL_TTL_SECONDS,
  UrlSigner,
  UsedSignatures,
} from "../../src/security/url_signature.ts";

const SECRET = "test-body-signing-secret-0123456789";
const TTL_SECONDS = 600;
const LIFETIMES = { answer: TTL_SECONDS, ws: 30 };
/** A fixed clock so expiry is decided by arithmetic, never by wall time. */
const NOW_MS = 1_700_000_000_000;
const BODY = "eyJzIjoifn5+Pz8/In0=";

Deno.test("UrlSigner", async (t) => {
  const signer = await UrlSigner.create(SECRET, { lifetimes: LIFETIMES });

  await t.step("sign then verify succeeds for both purposes", async () => {
    for (const purpose of ["answer", "ws"] as const) {
      const { exp, sig } = await signer.sign({ purpose, body: BODY }, NOW_MS);
      assert.deepEqual(await signer.verify({ purpose, body: BODY }, exp, sig, NOW_MS), {
        ok: true,
      });
    }
    const empty = await signer.sign({ purpose: "answer", body: "" }, NOW_MS);
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: "" }, empty.exp, empty.sig, NOW_MS),
      {
        ok: true,
      },
    );
  });

  await t.step("exp is the purpose's lifetime after now, in unix seconds", async () => {
    const answer = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS + 999);
    assert.equal(answer.exp, String(NOW_MS / 1000 + LIFETIMES.answer));
    const ws = await signer.sign({ purpose: "ws", body: BODY }, NOW_MS + 999);
    assert.equal(ws.exp, String(NOW_MS / 1000 + LIFETIMES.ws));
  });

  await t.step("a signature bound to one call is forged for any other call", async () => {
    const { exp, sig } = await signer.sign({ purpose: "ws", body: BODY, call: "v3:a" }, NOW_MS);
    assert.deepEqual(
      await signer.verify({ purpose: "ws", body: BODY, call: "v3:a" }, exp, sig, NOW_MS),
      { ok: true },
    );
    for (const call of ["v3:b", "", "v3:a ", "v3:"]) {
      assert.deepEqual(
        await signer.verify({ purpose: "ws", body: BODY, call }, exp, sig, NOW_MS),
        { ok: false, reason: "forged" },
        call,
      );
    }
  });

  await t.step("call and body cannot trade characters", async () => {
    // Whatever separator a message used, a call id chosen by the requester could try to
    // carry it; the signed text keeps the fields apart.
    const { exp, sig } = await signer.sign({ purpose: "ws", body: "", call: "v3:a\nB" }, NOW_MS);
    assert.deepEqual(
      await signer.verify({ purpose: "ws", body: "B", call: "v3:a" }, exp, sig, NOW_MS),
      { ok: false, reason: "forged" },
    );
  });

  await t.step("signUrl writes what verifyUrl reads", async () => {
    const href = await signer.signUrl(
      "wss://example.test/ws",
      { purpose: "ws", body: "a+b/c=", call: "v3:x&y=z" },
      NOW_MS,
    );
    const url = new URL(href);
    assert.equal(url.searchParams.get("call"), "v3:x&y=z");
    const check = await signer.verifyUrl(url, "ws", NOW_MS);
    assert.equal(check.ok, true);
    assert.deepEqual(check.fields, { purpose: "ws", body: "a+b/c=", call: "v3:x&y=z" });
    url.searchParams.set("call", "v3:other");
    assert.deepEqual((await signer.verifyUrl(url, "ws", NOW_MS)).ok, false);
    const unbound = new URL(
      await signer.signUrl("https://example.test/answer", {
        purpose: "answer",
        body: "",
      }, NOW_MS),
    );
    assert.deepEqual([...unbound.searchParams.keys()], ["exp", "sig"]);
  });

  await t.step("signing is deterministic for the same inputs", async () => {
    const a = await signer.sign({ purpose: "ws", body: BODY }, NOW_MS);
    const b = await signer.sign({ purpose: "ws", body: BODY }, NOW_MS);
    assert.deepEqual(a, b);
  });

  await t.step("sig is URL-safe base64 of 32 bytes", async () => {
    for (const body of [BODY, "", "x".repeat(5000), "Zoë 日本"]) {
      const { sig } = await signer.sign({ purpose: "answer", body }, NOW_MS);
      assert.match(sig, /^[A-Za-z0-9_-]{43}$/);
      assert.doesNotMatch(sig, /[+/=]/);
    }
  });

  await t.step("purposes are not interchangeable", async () => {
    const answer = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS);
    assert.deepEqual(
      await signer.verify({ purpose: "ws", body: BODY }, answer.exp, answer.sig, NOW_MS),
      {
        ok: false,
        reason: "forged",
      },
    );
    const ws = await signer.sign({ purpose: "ws", body: BODY }, NOW_MS);
    assert.notEqual(ws.sig, answer.sig);
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, ws.exp, ws.sig, NOW_MS),
      {
        ok: false,
        reason: "forged",
      },
    );
  });

  await t.step("an edited body is forged", async () => {
    const { exp, sig } = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS);
    for (const edited of [BODY + "A", BODY.slice(1), BODY.replace("+", "-"), ""]) {
      assert.deepEqual(await signer.verify({ purpose: "answer", body: edited }, exp, sig, NOW_MS), {
        ok: false,
        reason: "forged",
      }, edited);
    }
  });

  await t.step("an edited exp is forged, even when it is in the future", async () => {
    const { exp, sig } = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS);
    const later = String(Number(exp) + 86_400);
    assert.deepEqual(await signer.verify({ purpose: "answer", body: BODY }, later, sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
    // A leading zero keeps the number but changes the signed text.
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, `0${exp}`, sig, NOW_MS),
      {
        ok: false,
        reason: "forged",
      },
    );
  });

  await t.step("expired once now passes exp", async () => {
    const { exp, sig } = await signer.sign({ purpose: "ws", body: BODY }, NOW_MS);
    const expMs = Number(exp) * 1000;
    assert.deepEqual(await signer.verify({ purpose: "ws", body: BODY }, exp, sig, expMs), {
      ok: true,
    });
    assert.deepEqual(await signer.verify({ purpose: "ws", body: BODY }, exp, sig, expMs + 1), {
      ok: false,
      reason: "expired",
    });
    assert.deepEqual(
      await signer.verify({ purpose: "ws", body: BODY }, exp, sig, expMs + 86_400_000),
      {
        ok: false,
        reason: "expired",
      },
    );
  });

  await t.step("missing exp or sig", async () => {
    const { exp, sig } = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS);
    const missing = { ok: false, reason: "missing" };
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, undefined, sig, NOW_MS),
      missing,
    );
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, exp, undefined, NOW_MS),
      missing,
    );
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, undefined, undefined, NOW_MS),
      missing,
    );
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, "", sig, NOW_MS),
      missing,
    );
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, exp, "", NOW_MS),
      missing,
    );
  });

  await t.step("malformed sig or exp", async () => {
    const { exp, sig } = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS);
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
      assert.deepEqual(
        await signer.verify({ purpose: "answer", body: BODY }, exp, bad, NOW_MS),
        malformed,
        bad,
      );
    }
    for (const badExp of ["abc", "-1", "1.5", "1e10", " 1", "1234567890123"]) {
      assert.deepEqual(
        await signer.verify({ purpose: "answer", body: BODY }, badExp, sig, NOW_MS),
        malformed,
        badExp,
      );
    }
  });

  await t.step("a well-formed but wrong sig is forged", async () => {
    const { exp } = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS);
    assert.deepEqual(
      await signer.verify({ purpose: "answer", body: BODY }, exp, "A".repeat(43), NOW_MS),
      {
        ok: false,
        reason: "forged",
      },
    );
  });

  await t.step("a different secret is forged", async () => {
    const other = await UrlSigner.create(SECRET + "x", { lifetimes: LIFETIMES });
    const { exp, sig } = await other.sign({ purpose: "answer", body: BODY }, NOW_MS);
    assert.deepEqual(await signer.verify({ purpose: "answer", body: BODY }, exp, sig, NOW_MS), {
      ok: false,
      reason: "forged",
    });
  });

  await t.step("derive: true keys differently from the raw secret", async () => {
    const derived = await UrlSigner.create(SECRET, { lifetimes: LIFETIMES, derive: true });
    const raw = await signer.sign({ purpose: "answer", body: BODY }, NOW_MS);
    const fromDerived = await derived.sign({ purpose: "answer", body: BODY }, NOW_MS);
    assert.equal(fromDerived.exp, raw.exp);
    assert.notEqual(fromDerived.sig, raw.sig);
    assert.deepEqual(
      await signer.verify(
        { purpose: "answer", body: BODY },
        fromDerived.exp,
        fromDerived.sig,
        NOW_MS,
      ),
      {
        ok: false,
        reason: "forged",
      },
    );
    assert.deepEqual(
      await derived.verify({ purpose: "answer", body: BODY }, raw.exp, raw.sig, NOW_MS),
      {
        ok: false,
        reason: "forged",
      },
    );
  });

  await t.step("derived keys are deterministic across signers", async () => {
    // Two server instances sharing TELNYX_API_KEY must accept each other's URLs.
    const a = await UrlSigner.create(SECRET, { lifetimes: LIFETIMES, derive: true });
    const b = await UrlSigner.create(SECRET, { lifetimes: LIFETIMES, derive: true });
    const fromA = await a.sign({ purpose: "ws", body: BODY }, NOW_MS);
    const fromB = await b.sign({ purpose: "ws", body: BODY }, NOW_MS);
    assert.deepEqual(fromA, fromB);
    assert.deepEqual(await b.verify({ purpose: "ws", body: BODY }, fromA.exp, fromA.sig, NOW_MS), {
      ok: true,
    });
    assert.deepEqual(await a.verify({ purpose: "ws", body: BODY }, fromB.exp, fromB.sig, NOW_MS), {
      ok: true,
    });
  });

  await t.step("the TTL is not part of the key", async () => {
    // A signer with another TTL still verifies: only exp/sig in the URL matter.
    const longer = await UrlSigner.create(SECRET, {
      lifetimes: { answer: TTL_SECONDS * 10, ws: TTL_SECONDS * 10 },
    });
    const { exp, sig } = await longer.sign({ purpose: "answer", body: BODY }, NOW_MS);
    assert.deepEqual(await signer.verify({ purpose: "answer", body: BODY }, exp, sig, NOW_MS), {
      ok: true,
    });
  });
});

Deno.test("UsedSignatures", async (t) => {
  const signature = (n: number, expSeconds: number) => ({
    exp: String(expSeconds),
    sig: `sig-${n}`,
  });
  const NOW_S = NOW_MS / 1000;

  await t.step("a signature is fresh once, then reused", () => {
    const used = new UsedSignatures(10);
    assert.equal(used.claim(signature(1, NOW_S + 30), NOW_MS), "fresh");
    assert.equal(used.claim(signature(1, NOW_S + 30), NOW_MS), "reused");
    assert.equal(used.claim(signature(2, NOW_S + 30), NOW_MS), "fresh");
  });

  await t.step("expired signatures are forgotten", () => {
    const used = new UsedSignatures(10);
    used.claim(signature(1, NOW_S + 30), NOW_MS);
    used.claim(signature(2, NOW_S + 60), NOW_MS);
    assert.equal(used.size, 2);
    used.claim(signature(3, NOW_S + 90), NOW_MS + 31_000);
    assert.equal(used.size, 2, "the first one expired");
  });

  await t.step("when full of live signatures new ones are refused, none forgotten", () => {
    const used = new UsedSignatures(2);
    assert.equal(used.claim(signature(1, NOW_S + 30), NOW_MS), "fresh");
    assert.equal(used.claim(signature(2, NOW_S + 30), NOW_MS), "fresh");
    assert.equal(used.claim(signature(3, NOW_S + 30), NOW_MS), "full");
    assert.equal(used.claim(signature(1, NOW_S + 30), NOW_MS), "reused");
    assert.equal(used.size, 2);
  });

  await t.step("a full set frees slots whose URLs expired, wherever they are", () => {
    const used = new UsedSignatures(2);
    used.claim(signature(1, NOW_S + 60), NOW_MS);
    used.claim(signature(2, NOW_S + 10), NOW_MS);
    assert.equal(used.claim(signature(3, NOW_S + 60), NOW_MS + 20_000), "fresh");
    assert.equal(used.size, 2);
  });
});

Deno.test("callback signatures are valid for a day by default and only for their own purpose", async () => {
  const signer = await UrlSigner.create(SECRET, { lifetimes: LIFETIMES });
  const now = Date.UTC(2026, 0, 1);
  const status = await signer.sign({ purpose: "status", body: "" }, now);
  assert.equal(Number(status.exp), now / 1000 + CALLBACK_URL_TTL_SECONDS);
  const check = (purpose: "status" | "amd" | "answer" | "ws") =>
    signer.verify({ purpose, body: "" }, status.exp, status.sig, now);
  assert.deepEqual(await check("status"), { ok: true });
  for (const other of ["amd", "answer", "ws"] as const) {
    assert.deepEqual(await check(other), { ok: false, reason: "forged" }, other);
  }
});
