import assert from "node:assert/strict";
import { Logger } from "../../src/log.ts";
import { CallSession, type CallSessionDeps } from "../../src/session/call_session.ts";
import { FakeTransport } from "../helpers/playout_model.ts";

function session(deps: Partial<CallSessionDeps> = {}) {
  const logs: string[] = [];
  const transport = new FakeTransport();
  const call = new CallSession({
    streamId: "stream-1",
    callControlId: "v3:call-1",
    body: {},
  }, {
    transport,
    hangupCall: () => Promise.resolve("hung_up"),
    logger: new Logger({ level: "debug", format: "json", sink: (line) => logs.push(line) }),
    ...deps,
  });
  call.start();
  return { call, logs, closes: transport.closes };
}

Deno.test("session: a Telnyx hang-up that never answers does not hold the session", async () => {
  const { call, logs, closes } = session({
    hangupCall: () => new Promise(() => {}),
    hangupTimeoutMs: 20,
  });
  await call.hangUp("bot_hung_up");
  assert.equal(call.state, "ended");
  assert.deepEqual(closes.map((close) => close.code), [1000]);
  assert.ok(logs.some((l) => l.includes("hang-up failed") && l.includes("Telnyx hang-up")));
});

Deno.test("session: an agent that never closes does not hold the session", async () => {
  const { call, logs } = session({ agentCloseTimeoutMs: 20 });
  call.attach({
    onAudio: () => {},
    onDtmf: () => {},
    onMark: () => {},
    close: () => new Promise(() => {}),
  });
  await call.hangUp("callee_hung_up");
  assert.equal(call.state, "ended");
  assert.ok(logs.some((l) => l.includes("agent did not close in time")));
});

Deno.test("session: key presses and mark echoes are counted, never kept", async () => {
  const { call, logs } = session();
  for (let i = 0; i < 1000; i++) {
    call.deliver({ type: "dtmf", digit: "1" });
    call.deliver({ type: "mark", name: `m${i}` });
  }
  assert.equal(call.stats.dtmfPresses, 1000);
  assert.equal(call.stats.markEchoes, 1000);
  assert.ok(
    Object.values(call.stats).every((value) => typeof value === "number"),
    "only counters",
  );
  assert.ok(!logs.some((l) => l.includes('"level":"info"') && l.includes('"msg":"dtmf"')));
  await call.hangUp();
});

/** An agent that records the first byte of every frame it hears. */
function listeningAgent() {
  const heard: number[] = [];
  return {
    heard,
    agent: {
      onAudio: (payload: Uint8Array) => void heard.push(payload[0]),
      onDtmf: () => {},
      onMark: () => {},
      close: () => Promise.resolve(),
    },
  };
}

Deno.test("session: audio from before the agent started reaches it, in order", async () => {
  const { call } = session();
  const lent = new Uint8Array(160);
  for (const first of [1, 2, 3]) {
    lent[0] = first; // the transport reuses its buffer: what is kept must be a copy
    call.deliver({ type: "media", payload: lent });
  }
  const { heard, agent } = listeningAgent();
  call.attach(agent);
  assert.deepEqual(heard, [], "held until the agent's start-up has run");
  await Promise.resolve();
  lent[0] = 4;
  call.deliver({ type: "media", payload: lent });
  assert.deepEqual(heard, [1, 2, 3, 4]);
  assert.equal(call.stats.mediaFrames, 4);
  await call.hangUp();
});

Deno.test("session: audio before the agent is bounded to its last two seconds", async () => {
  const { call } = session();
  for (let i = 0; i < 150; i++) {
    call.deliver({ type: "media", payload: new Uint8Array(160).fill(i) });
  }
  const { heard, agent } = listeningAgent();
  call.attach(agent);
  await Promise.resolve();
  assert.equal(heard.length, 100, "2 s of 20 ms frames");
  assert.deepEqual([heard[0], heard.at(-1)], [50, 149], "the most recent kept");
  await call.hangUp();
});

Deno.test("session: audio before an agent that attaches to an ended call is dropped", async () => {
  const { call } = session();
  call.deliver({ type: "media", payload: new Uint8Array(160) });
  await call.hangUp();
  const { heard, agent } = listeningAgent();
  call.attach(agent);
  await Promise.resolve();
  assert.deepEqual(heard, []);
});
