/**
 * Connection floods against the real entry point (`main.ts` in a child process) started with
 * 1,024 descriptors: more slow connections than that must not end the process or a live call.
 */
import assert from "node:assert/strict";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { deadline, delay } from "../../src/async/deadline.ts";
import { placeAndAnswer } from "../helpers/call_driver.ts";
import { type ChildServer, spawnServer, spawnServerWithFakes } from "../helpers/child_server.ts";
import { waitFor } from "../helpers/harness.ts";

const SERVER_DESCRIPTORS = 1024;
const HALF_SENT_HEADERS = 1100;
const SLOW_BODIES = 50;
const REPLY = "Sure, I can help with that.";

/** Makes sure this test process may open the flood's connections (raises its own soft limit). */
async function allowOwnDescriptors(needed: number): Promise<void> {
  const prlimit = (...args: string[]) =>
    new Deno.Command("prlimit", { args: ["--pid", String(Deno.pid), ...args] })
      .output();
  const current = await prlimit("--nofile", "--output", "SOFT,HARD", "--noheadings");
  const [soft, hard] = new TextDecoder().decode(current.stdout).trim().split(/\s+/).map(Number);
  if (soft >= needed) return;
  const raised = await prlimit(`--nofile=${needed}:${Math.max(needed, hard)}`);
  assert.ok(raised.success, `this test needs ${needed} descriptors; raise ulimit -n`);
}

/** Output of a command, as text. (Deno lets only --allow-all read another process's /proc.) */
async function run(command: string, ...args: string[]): Promise<string> {
  const { stdout } = await new Deno.Command(command, { args }).output();
  return new TextDecoder().decode(stdout);
}

async function openDescriptors(pid: number): Promise<number> {
  return (await run("ls", "-1", `/proc/${pid}/fd`)).trim().split("\n").length;
}

// `ps`, not /proc like the benches: Deno reads /proc/<pid> only with --allow-all.
async function residentBytes(pid: number): Promise<number> {
  return Number((await run("ps", "-o", "rss=", "-p", String(pid))).trim()) * 1024;
}

/** Opens `count` connections to `url` and sends `prefix` on each, never finishing the request. */
async function openSlowConnections(url: string, count: number, prefix: string) {
  const { hostname, port } = new URL(url);
  const conns: Deno.Conn[] = [];
  let refused = 0;
  const bytes = new TextEncoder().encode(prefix);
  for (let i = 0; i < count; i++) {
    try {
      const conn = await Deno.connect({ hostname, port: Number(port) });
      conns.push(conn);
      await conn.write(bytes).catch(() => {});
    } catch {
      refused++;
    }
  }
  return {
    conns,
    refused,
    close: () => {
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed by the server */ }
      }
    },
  };
}

/** Waits (bounded) until the child logs that its listener ran out of descriptors, or exits. */
function listenerFailed(server: ChildServer, exited: () => boolean): Promise<void> {
  return waitFor(
    () => exited() || server.lines.some((l) => String(l.msg).startsWith("listener failed")),
    "the listener to run out of descriptors",
    10_000,
  );
}

/**
 * Polls `/health` every 50 ms, at most 200 times, until it answers 200; returns that answer, or
 * the last one (undefined when no connection was accepted).
 */
async function healthOnceAnswering(url: string): Promise<Response | undefined> {
  let health: Response | undefined;
  for (let i = 0; i < 200 && health?.status !== 200; i++) {
    health = await fetch(`${url}/health`).catch(() => undefined);
    if (health?.status !== 200) {
      await health?.body?.cancel();
      await delay(50);
    }
  }
  return health;
}

Deno.test({
  name: "more slow connections than descriptors: the process and a live call survive",
  // Linux only: the descriptor limit and the /proc figures.
  ignore: Deno.build.os !== "linux",
  async fn() {
    await allowOwnDescriptors(4096);
    // The callee speaks one second into the audio it sends once the flood is in place.
    await using fakes = await spawnServerWithFakes({
      FIRST_SPEAKER: "bot",
      SHUTDOWN_GRACE_SECONDS: "0",
    }, {
      maxOpenFiles: SERVER_DESCRIPTORS,
      openai: { whenQueueEmpty: () => ({ kind: "text", text: REPLY }) },
      deepgram: { script: [{ text: "Can you help me?", startByte: 8000, endByte: 16000 }] },
    });
    const { server, openai } = fakes;
    let exited = false;
    server.process.status.then(() => exited = true);

    // A call is live and streaming before the flood.
    const call = await placeAndAnswer(fakes, { name: "Zoë" });
    const client = await TelnyxMediaClient.connect(call.streamUrl, {
      callControlId: call.callSid,
    });
    client.start();
    await waitFor(() => client.framesOf("media").length > 0, "greeting audio", 10_000);
    const rssBefore = await residentBytes(server.pid);
    const descriptorsBefore = await openDescriptors(server.pid);

    // The flood: bodies that never finish, then headers that never finish.
    const bodies = await openSlowConnections(
      server.url,
      SLOW_BODIES,
      "POST /answer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nCallSid=",
    );
    const headers = await openSlowConnections(
      server.url,
      HALF_SENT_HEADERS,
      "GET /health HTTP/1.1\r\nHost: x\r\n",
    );
    try {
      await listenerFailed(server, () => exited);
      assert.equal(exited, false, "the server process exited");
      const descriptorsDuring = await openDescriptors(server.pid);
      const rssDuring = await residentBytes(server.pid);
      const flooding = performance.now();

      // The live call goes on: the callee speaks, the agent asks the LLM (a new connection) and
      // its spoken answer arrives on the media socket.
      client.streamAudio(new Uint8Array());
      await waitFor(() => openai.requests.length > 0, "the LLM request during the flood", 15_000);
      const framesBeforeAnswer = client.framesOf("media").length;
      await waitFor(
        () => client.framesOf("media").length > framesBeforeAnswer,
        "the agent's answer during the flood",
        10_000,
      );
      assert.equal(exited, false, "the server process exited");
      assert.equal(client.socket.readyState, WebSocket.OPEN);
      // With a call live on it, the failed listener's connections are left alone.
      assert.ok(!server.lines.some((l) => String(l.msg).startsWith("closing a failed listener")));

      const accepted = headers.conns.length + bodies.conns.length;
      console.log(JSON.stringify({
        server_alive: !exited,
        descriptors_before: descriptorsBefore,
        descriptors_during: descriptorsDuring,
        connections_opened: accepted,
        connections_refused: headers.refused + bodies.refused,
        rss_before_mib: +(rssBefore / 2 ** 20).toFixed(1),
        rss_during_mib: +(rssDuring / 2 ** 20).toFixed(1),
        bytes_per_connection: Math.round((rssDuring - rssBefore) / accepted),
        answer_during_flood_ms: Math.round(performance.now() - flooding),
      }));
    } finally {
      headers.close();
      bodies.close();
    }

    // Released: /health answers again, with the call still counted.
    const released = performance.now();
    const health = await healthOnceAnswering(server.url);
    assert.equal(health?.status, 200);
    assert.equal((await health!.json()).active_calls, 1);
    console.log(JSON.stringify({ recovered_ms: Math.round(performance.now() - released) }));
    assert.equal(client.socket.readyState, WebSocket.OPEN);
    client.stopAudio();
    await client.close();
  },
});

Deno.test({
  name: "with no call live, a flood that took every descriptor is cut off and /health answers",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await allowOwnDescriptors(4096);
    await using server = await spawnServer({}, { maxOpenFiles: SERVER_DESCRIPTORS });
    let exited = false;
    server.process.status.then(() => exited = true);
    const flood = await openSlowConnections(
      server.url,
      HALF_SENT_HEADERS,
      "GET /health HTTP/1.1\r\nHost: x\r\n",
    );
    try {
      await listenerFailed(server, () => exited);
      const failedAt = performance.now();
      // The flood's clients stay connected; the server closes their connections itself.
      const health = await healthOnceAnswering(server.url);
      assert.equal(exited, false, "the server process exited");
      assert.equal(health?.status, 200);
      await health!.body?.cancel();
      const closedByServer = await deadline(
        flood.conns[0].read(new Uint8Array(16)).catch(() => null),
        5000,
        { what: "the server to close a flood connection" },
      );
      assert.equal(closedByServer, null);
      console.log(JSON.stringify({
        connections_opened: flood.conns.length,
        health_after_listener_failed_ms: Math.round(performance.now() - failedAt),
      }));
    } finally {
      flood.close();
    }
  },
});
