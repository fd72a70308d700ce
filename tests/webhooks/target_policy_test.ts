import assert from "node:assert/strict";
import {
  classifyAddress,
  deliveryTargetProblem,
  type Resolver,
  webhookUrlProblem,
} from "../../src/webhooks/target_policy.ts";
import { startWebhooks, waitForDeliveries } from "./webhook_harness.ts";

const PRODUCTION = { local: false, allowPrivate: false };
const LOCAL = { local: true, allowPrivate: false };

Deno.test("addresses are classified: public, loopback, private ranges and metadata", () => {
  const cases: [string, string][] = [
    ["93.184.216.34", "public"],
    ["2606:4700::1111", "public"],
    ["127.0.0.1", "loopback"],
    ["::1", "loopback"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", "public"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "private"], // carrier-grade NAT
    ["169.254.10.1", "private"], // link-local
    ["0.0.0.0", "private"],
    ["::", "private"],
    ["fc00::1", "private"], // unique-local
    ["fe80::1", "private"],
    ["ff02::1", "private"],
    ["169.254.169.254", "metadata"],
    ["fd00:ec2::254", "metadata"],
    ["::ffff:169.254.169.254", "metadata"], // IPv4-mapped
    ["::ffff:10.0.0.1", "private"],
    ["64:ff9b::a00:1", "private"], // NAT64 of 10.0.0.1
    ["not-an-ip", "private"],
  ];
  for (const [ip, kind] of cases) assert.equal(classifyAddress(ip), kind, ip);
});

Deno.test("webhook URLs: https to public hosts only; http and loopback only with ENV=local", () => {
  assert.equal(webhookUrlProblem("https://hooks.example.com/calls", PRODUCTION), undefined);
  assert.equal(webhookUrlProblem("https://93.184.216.34/x", PRODUCTION), undefined);
  assert.equal(webhookUrlProblem("http://127.0.0.1:9000/x", LOCAL), undefined);
  assert.equal(webhookUrlProblem("http://localhost:9000/x", LOCAL), undefined);
  assert.match(webhookUrlProblem("http://hooks.example.com/x", PRODUCTION)!, /https/);
  assert.match(webhookUrlProblem("http://hooks.example.com/x", LOCAL)!, /https/);
  assert.match(webhookUrlProblem("http://127.0.0.1/x", PRODUCTION)!, /https/);
  assert.match(webhookUrlProblem("https://127.0.0.1/x", PRODUCTION)!, /loopback/);
  assert.match(webhookUrlProblem("https://localhost/x", PRODUCTION)!, /loopback/);
  assert.match(webhookUrlProblem("ftp://example.com/x", PRODUCTION)!, /scheme is ftp/);
  assert.match(webhookUrlProblem("not a url", PRODUCTION)!, /not a URL/);
  assert.match(webhookUrlProblem("https://u:p@example.com/", PRODUCTION)!, /password/);
});

Deno.test("webhook URLs naming private or metadata addresses are refused, in any spelling", () => {
  for (
    const url of [
      "https://169.254.169.254/latest/meta-data/",
      "https://[fd00:ec2::254]/latest",
      "https://[::ffff:a9fe:a9fe]/", // 169.254.169.254, IPv4-mapped in hex
      "https://0xa9fea9fe/", // 169.254.169.254 as one hex number
      "https://2852039166/", // and as one decimal number
      "https://10.0.0.1/",
      "https://[fe80::1]/",
      "https://100.100.100.200/",
      "https://metadata.google.internal/",
      "https://0.0.0.0/",
    ]
  ) {
    const problem = webhookUrlProblem(url, PRODUCTION);
    assert.ok(problem, url);
    assert.match(problem, /WEBHOOK_ALLOW_PRIVATE=true/, url);
  }
  assert.equal(
    webhookUrlProblem("https://10.0.0.1/", { local: false, allowPrivate: true }),
    undefined,
  );
});

const table = (entries: Record<string, string[]>): Resolver => (host, type) =>
  Promise.resolve(
    (entries[host] ?? []).filter((ip) => ip.includes(":") === (type === "AAAA")),
  );

Deno.test("at delivery, a host name resolving to a private or metadata address is refused", async () => {
  const resolve = table({
    "public.example": ["93.184.216.34", "2606:4700::1111"],
    "sneaky.example": ["93.184.216.34", "169.254.169.254"],
    "inside.example": ["fd12::1"],
  });
  assert.equal(
    await deliveryTargetProblem("https://public.example/x", PRODUCTION, resolve),
    undefined,
  );
  const sneaky = await deliveryTargetProblem("https://sneaky.example/x", PRODUCTION, resolve);
  assert.equal(sneaky?.permanent, true);
  assert.match(sneaky!.message, /169\.254\.169\.254.*metadata/);
  const inside = await deliveryTargetProblem("https://inside.example/x", PRODUCTION, resolve);
  assert.equal(inside?.permanent, true);
  const missing = await deliveryTargetProblem("https://gone.example/x", PRODUCTION, resolve);
  assert.equal(missing?.permanent, false, "a name without addresses may come back: retried");
});

Deno.test("a delivery whose host resolves to a private address is refused before any request", async () => {
  let lookups = 0;
  const resolve: Resolver = (_host, type) => {
    lookups++;
    return Promise.resolve(type === "A" ? ["10.0.0.7"] : []);
  };
  await using hooks = await startWebhooks({
    policy: PRODUCTION,
    defaultUrl: "https://hooks.internal.example/calls",
    resolve,
  });
  await hooks.webhooks.emit("v3:ssrf", "call.ended", {});
  const views = await waitForDeliveries(
    hooks.webhooks,
    "v3:ssrf",
    (v) => v[0]?.state === "refused",
    "the refusal",
  );
  assert.equal(views[0].attempts.length, 1);
  assert.match(views[0].attempts[0].error!, /resolves to 10\.0\.0\.7/);
  assert.ok(lookups > 0);
  assert.equal(await hooks.webhooks.pendingCount(), 0);
});
