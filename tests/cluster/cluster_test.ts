/**
 * Several server processes on one port under the supervisor (`WORKERS=2`), from `main.ts` as
 * users run it: any process serves any step of a call, `/health` speaks for all of them, SIGTERM
 * drains all of them, and a process that dies is replaced while the others' calls go on.
 *
 * Which process the kernel hands a connection to is not ours to choose, so the tests place calls
 * until the spread they need has happened (bounded). Waits are hang guards, never timing
 * assertions.
 */
import assert from "node:assert/strict";
import { deadline } from "../../src/async/deadline.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { placeAndAnswer } from "../helpers/call_driver.ts";
import { serverPids, type ServerWithFakes, spawnServerWithFakes } from "../helpers/child_server.ts";
import { waitFor } from "../helpers/harness.ts";

/** Calls placed at most while waiting for the spread a test needs: 2^-24 to miss by chance. */
const MAX_CALLS = 24;
/** Hang guard for the supervisor's exit after SIGTERM (grace 1 s, plus the drain's bounds). */
const EXIT_WITHIN_MS = 30_000;

interface LiveCall {
  callSid: string;
  client: TelnyxMediaClient;
  /** The server process that placed it (`/start`). */
  placedBy: number;
  /** The server process that holds its media stream. */
  streamedBy: number;
}

function workerOf(rig: ServerWithFakes, msg: string, callSid: string): number | undefined {
  const line = rig.server.lines.find((l) => l.msg === msg && l.call === callSid);
  return line === undefined ? undefined : Number(line.worker);
}

/**
 * Places a call, answers it and starts its stream; resolves once its greeting is playing (or,
 * with `greeting: false`, once its session started).
 */
async function liveCall(rig: ServerWithFakes, options = { greeting: true }): Promise<LiveCall> {
  const { callSid, streamUrl } = await placeAndAnswer(rig, { name: "Zoë" });
  const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
  client.start();
  if (options.greeting) {
    await waitFor(() => client.framesOf("media").length > 0, "greeting audio", 10_000);
  }
  await waitFor(() => workerOf(rig, "call session started", callSid) !== undefined, "session log");
  return {
    callSid,
    client,
    placedBy: workerOf(rig, "call placed", callSid)!,
    streamedBy: workerOf(rig, "call session started", callSid)!,
  };
}

/** Places calls until `enough(calls)` holds; the calls all stay live. */
async function callsUntil(
  rig: ServerWithFakes,
  enough: (calls: LiveCall[]) => boolean,
): Promise<LiveCall[]> {
  const calls: LiveCall[] = [];
  while (!enough(calls)) {
    assert.ok(calls.length < MAX_CALLS, `no such spread after ${MAX_CALLS} calls`);
    calls.push(await liveCall(rig));
  }
  return calls;
}

const onBothProcesses = (calls: LiveCall[]) => new Set(calls.map((c) => c.streamedBy)).size === 2;

async function twoProcesses(env: Record<string, string> = {}): Promise<ServerWithFakes> {
  const rig = await spawnServerWithFakes({
    WORKERS: "2",
    FIRST_SPEAKER: "bot",
    IDLE_TIMEOUT_SECONDS: "60",
    ...env,
  });
  assert.equal(serverPids(rig.server).length, 2);
  return rig;
}

/** Checks below ask the server processes over HTTP: polled gently. */
const POLL_MS = 100;

async function health(url: string): Promise<Record<string, unknown>> {
  return await (await fetch(`${url}/health`)).json();
}

Deno.test("a call placed by one server process is answered and streamed by another", async () => {
  await using rig = await twoProcesses();
  const calls = await callsUntil(rig, (calls) => calls.some((c) => c.placedBy !== c.streamedBy));
  const crossed = calls.find((c) => c.placedBy !== c.streamedBy)!;
  assert.ok(crossed.client.framesOf("media").length > 0, "the greeting plays on that call");
  for (const call of calls) call.client.stop();
  await Promise.all(calls.map((c) => deadline(c.client.closed, 10_000, { what: "call end" })));
});

Deno.test("a Stream URL opens one socket, whichever server process the replays reach", async () => {
  await using rig = await twoProcesses();
  const { callSid, streamUrl } = await placeAndAnswer(rig, { name: "Zoë" });
  const first = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
  first.start();
  await waitFor(() => first.framesOf("media").length > 0, "greeting audio", 10_000);
  // Each replay is a new connection, which the kernel gives to either process: replay until
  // both have refused one.
  const refusedBy = () =>
    new Set(
      rig.server.lines.filter((l) => l.msg === "refusing media socket").map((l) => l.worker),
    );
  for (let i = 0; refusedBy().size < 2; i++) {
    assert.ok(i < MAX_CALLS, `every replay reached worker ${[...refusedBy()]}`);
    const replay = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
    const close = await deadline(replay.closed, 10_000, { what: "the replay's refusal" });
    assert.equal(close.code, 1008);
    assert.match(close.reason, /already used/);
    await waitFor(
      () => rig.server.lines.filter((l) => l.msg === "refusing media socket").length > i,
      "refusal log",
    );
  }
  assert.ok(first.framesOf("media").length > 0, "the first socket is still the call");
  first.stop();
  await deadline(first.closed, 10_000, { what: "call end" });
});

Deno.test("POST /calls/:id/hangup on either server process ends a call held by either", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cluster-kv-" });
  try {
    // One KV file for both processes: the record of a call is found whichever one is asked.
    await using rig = await spawnServerWithFakes({
      WORKERS: "2",
      FIRST_SPEAKER: "bot",
      IDLE_TIMEOUT_SECONDS: "60",
      KV_PATH: `${dir}/calls.sqlite3`,
    }, { denoFlags: [`--allow-write=${dir}`] });
    const calls = await callsUntil(rig, onBothProcesses);
    for (const call of calls) {
      // A client of its own per request: a new connection, which either process may get.
      using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
      const res = await fetch(`${rig.server.url}/calls/${call.callSid}/hangup`, {
        method: "POST",
        client,
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { id: call.callSid, status: "hung_up" });
      assert.equal(rig.telnyx.hangupRequests(call.callSid).length, 1);
    }
    const byApi = new Set(
      rig.server.lines.filter((l) => l.msg === "call hung up through the API").map((l) => l.call),
    );
    // Telnyx ends the stream of a call hung up through it; its fake does not, so the caller does.
    for (const call of calls.filter((c) => byApi.has(c.callSid))) call.client.stop();
    await Promise.all(calls.map((c) => deadline(c.client.closed, 10_000, { what: "call end" })));
    for (const call of calls) {
      await waitFor(
        async () => {
          const record = await (await fetch(`${rig.server.url}/calls/${call.callSid}`)).json();
          return record.status === "ended" && record.end_reason === "api_hangup";
        },
        `the record of ${call.callSid} to end with api_hangup`,
        10_000,
        POLL_MS,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an answering-machine result reaches its call from the process that received it", async () => {
  await using rig = await twoProcesses({ AMD: "on", FIRST_SPEAKER: "callee" });
  // Each callback goes to whichever process the fake Telnyx's connection reaches: place calls
  // until one's result lands on the process not holding its stream.
  for (let i = 0;; i++) {
    assert.ok(i < MAX_CALLS, "every result reached the process holding its call");
    const call = await liveCall(rig, { greeting: false });
    assert.equal((await rig.telnyx.sendAmd(call.callSid, "fax")).status, 200);
    // A fax is hung up on at once, by the process holding the stream.
    await waitFor(
      () => rig.telnyx.hangupRequests(call.callSid).length === 1,
      "the fax to be hung up on",
      10_000,
    );
    await deadline(call.client.closed, 10_000, { what: "the fax call's end" });
    const received = rig.server.lines.find((l) =>
      l.msg === "answering machine detection" && l.call === call.callSid
    );
    if (received?.live_here === false) {
      assert.notEqual(received.worker, call.streamedBy);
      // The summary comes once the call's vendor sockets have closed, after the media socket.
      const summary = () =>
        rig.server.lines.find((l) => l.msg === "call summary" && l.call === call.callSid);
      await waitFor(() => summary() !== undefined, "the fax call's summary", 10_000);
      assert.equal(summary()?.worker, call.streamedBy);
      return;
    }
  }
});

Deno.test("/health on any server process counts the calls of all of them", async () => {
  await using rig = await twoProcesses();
  const calls = await callsUntil(rig, onBothProcesses);
  // Other processes' figures are their latest report, at most a report interval old.
  let seen: Record<string, unknown>[] = [];
  await waitFor(
    async () => {
      seen = await Promise.all(Array.from({ length: 4 }, () => health(rig.server.url)));
      return seen.every((h) => h.active_calls === calls.length);
    },
    "every /health to count every call",
    10_000,
    POLL_MS,
  );
  const workers = seen[0].workers as { expected: number; live: number };
  assert.equal(workers.expected, 2);
  assert.equal(workers.live, 2);
  for (const call of calls) call.client.stop();
  await Promise.all(calls.map((c) => deadline(c.client.closed, 10_000, { what: "call end" })));
});

Deno.test("SIGTERM to the supervisor drains the calls of every server process and exits 0", async () => {
  await using rig = await twoProcesses({ SHUTDOWN_GRACE_SECONDS: "1" });
  const { server, telnyx } = rig;
  const calls = await callsUntil(rig, onBothProcesses);

  server.process.kill("SIGTERM");
  const status = await deadline(server.process.status, EXIT_WITHIN_MS, {
    what: "the supervisor's exit",
  });
  await server.done;

  assert.equal(status.code, 0);
  for (const call of calls) {
    assert.equal(telnyx.hangupRequests(call.callSid).length, 1, `hang-up of ${call.callSid}`);
    assert.equal((await call.client.closed).code, 1001);
  }
  const shutDowns = server.lines.filter((l) => l.msg === "shut down" && l.worker !== undefined);
  assert.deepEqual(shutDowns.map((l) => l.worker).sort(), [0, 1]);
  const hungUp = shutDowns.reduce((n, l) => n + Number(l.hung_up_calls), 0);
  assert.equal(hungUp, calls.length);
});

Deno.test("a killed server process is replaced and the other one's calls go on", async () => {
  await using rig = await twoProcesses();
  const { server } = rig;
  const calls = await callsUntil(rig, onBothProcesses);
  const victim = calls[0].streamedBy;
  const victimPid = serverPids(server)[victim];
  const survivors = calls.filter((c) => c.streamedBy !== victim);

  Deno.kill(victimPid, "SIGKILL");

  await waitFor(
    () => serverPids(server)[victim] !== victimPid,
    "a new server process in its place",
    10_000,
  );
  await waitFor(
    async () => {
      const workers = (await health(server.url)).workers as { live: number; restarts: number };
      return workers.live === 2 && workers.restarts === 1;
    },
    "the new process to report",
    10_000,
    POLL_MS,
  );
  // The killed process's calls lost their stream; the others' are still up.
  for (const call of calls.filter((c) => c.streamedBy === victim)) {
    await deadline(call.client.closed, 10_000, { what: "the killed process's call to drop" });
  }
  const stillOpen = await Promise.all(
    survivors.map((c) => deadline(c.client.closed, 0).then(() => false, () => true)),
  );
  assert.deepEqual(stillOpen, survivors.map(() => true));
  // They end normally, on the process that held them all along.
  for (const call of survivors) call.client.stop();
  await waitFor(
    () =>
      survivors.every((c) =>
        server.lines.some((l) =>
          l.msg === "call summary" && l.call === c.callSid && l.worker === c.streamedBy
        )
      ),
    "the survivors' call summaries",
    10_000,
  );
  // And the server takes new calls, whichever process they reach.
  const next = await liveCall(rig);
  next.client.stop();
  await deadline(next.client.closed, 10_000, { what: "the new call's end" });
});
