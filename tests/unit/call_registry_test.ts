/**
 * The registry: one live session per stream and per call, pending media sockets counted per
 * client, and a drain that ends within its grace plus its hang-up bound whatever Telnyx does.
 */
import assert from "node:assert/strict";
import { Logger } from "../../src/log.ts";
import { CallRegistry } from "../../src/session/call_registry.ts";
import { FakeTransport } from "../helpers/playout_model.ts";
import { CallSession, type HangupCall } from "../../src/session/call_session.ts";

const silentLogger = new Logger({ level: "error", format: "json", sink: () => {} });

function session(
  ids: { streamId: string; callControlId: string },
  hangupCall: HangupCall = () => Promise.resolve("hung_up"),
): CallSession {
  return new CallSession(
    {
      ...ids,
      body: {},
    },
    { transport: new FakeTransport(), hangupCall, logger: silentLogger },
  );
}

Deno.test("a live session is never replaced by one with the same stream or call", async () => {
  const registry = new CallRegistry();
  const live = session({ streamId: "s1", callControlId: "c1" });
  assert.equal(registry.add(live), undefined);
  assert.match(
    registry.add(session({ streamId: "s1", callControlId: "c2" })) ?? "",
    /stream_id/,
  );
  assert.match(
    registry.add(session({ streamId: "s2", callControlId: "c1" })) ?? "",
    /live media stream/,
  );
  assert.deepEqual(registry.sessions(), [live]);
  assert.equal(registry.active, 1);

  await live.hangUp();
  assert.equal(registry.active, 0);
  const next = session({ streamId: "s2", callControlId: "c1" });
  assert.equal(registry.add(next), undefined, "the call id is free once its session ended");
  await next.hangUp();
});

Deno.test("pending sockets are counted overall and per client until released", () => {
  const registry = new CallRegistry();
  const a1 = registry.holdPending("10.0.0.1", () => {});
  const a2 = registry.holdPending("10.0.0.1", () => {});
  registry.holdPending("10.0.0.2", () => {});
  assert.equal(registry.pending, 3);
  assert.equal(registry.pendingFrom("10.0.0.1"), 2);
  a1.release();
  a1.release();
  assert.equal(registry.pendingFrom("10.0.0.1"), 1, "release is idempotent");
  a2.release();
  assert.equal(registry.pendingFrom("10.0.0.1"), 0);
  assert.equal(registry.pending, 1);
});

Deno.test("drain ends within its bound when Telnyx never answers the hang-up", async () => {
  const registry = new CallRegistry();
  const telnyxNeverAnswers = Promise.withResolvers<"hung_up">();
  const stuck = session(
    { streamId: "s1", callControlId: "c1" },
    () => telnyxNeverAnswers.promise,
  );
  registry.add(stuck);
  stuck.start();
  const closedPending: number[] = [];
  registry.holdPending("10.0.0.1", (code) => closedPending.push(code));

  const result = await registry.drain(0, { hangupBoundMs: 20 });

  assert.deepEqual(result, { finished: 0, hungUp: 1, unconfirmed: 1, pendingClosed: 1 });
  assert.equal(stuck.state, "ending", "drain returned while the hang-up was still pending");
  assert.deepEqual(closedPending, [1001]);
  assert.equal(registry.pending, 0);

  telnyxNeverAnswers.resolve("hung_up");
  await stuck.ended;
});

Deno.test("drain lets calls end on their own during the grace period", async () => {
  const registry = new CallRegistry();
  const hangups: string[] = [];
  const ending = session({ streamId: "s1", callControlId: "c1" }, (id) => {
    hangups.push(id);
    return Promise.resolve("already_ended");
  });
  registry.add(ending);
  ending.start();
  const drained = registry.drain(10_000, { hangupBoundMs: 20 });
  ending.deliver({ type: "stop" });
  assert.deepEqual(await drained, { finished: 1, hungUp: 0, unconfirmed: 0, pendingClosed: 0 });
  assert.equal(ending.endReason, "callee_hung_up");
});

Deno.test("a live call is found by its call id until its session ends", async () => {
  const registry = new CallRegistry();
  const live = session({ streamId: "s1", callControlId: "c1" });
  registry.add(live);
  assert.equal(registry.byCall("c1"), live);
  assert.equal(registry.byCall("c2"), undefined);
  await live.hangUp();
  assert.equal(registry.byCall("c1"), undefined);
});

Deno.test("an early detection result is taken once, by its call only", () => {
  const registry = new CallRegistry();
  registry.rememberAnsweredBy("v3:a", "machine_start", 0);
  assert.equal(registry.takeAnsweredBy("v3:b", 10), undefined);
  assert.equal(registry.takeAnsweredBy("v3:a", 10), "machine_start");
  assert.equal(registry.takeAnsweredBy("v3:a", 20), undefined);
});

Deno.test("an early detection result older than a stream's start-up is not handed out", () => {
  const registry = new CallRegistry();
  registry.rememberAnsweredBy("v3:a", "human", 0);
  assert.equal(registry.takeAnsweredBy("v3:a", 10 * 60_000), undefined);
});

Deno.test("early detection results are bounded: the oldest go first", () => {
  const registry = new CallRegistry();
  for (let i = 0; i <= 1_000; i++) registry.rememberAnsweredBy(`v3:${i}`, "human", 0);
  assert.equal(registry.takeAnsweredBy("v3:0", 1), undefined);
  assert.equal(registry.takeAnsweredBy("v3:1000", 1), "human");
});
