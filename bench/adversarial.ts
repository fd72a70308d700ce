/**
 * Re-measures the adversarial findings of issue 6 against the real server in a child process,
 * with the loopback fakes, and prints a markdown table "finding | before | now". Each abuse runs
 * beside a live call the bot is speaking on (a long greeting), whose playback underruns are
 * reported from its `call summary` log line.
 *
 * Run: `deno task bench` (it runs last), or
 * `deno run -A --cert tests/fakes/tls/ca.pem bench/adversarial.ts [--only <measure>]...`
 * (about two minutes; loopback only, every loop bounded in count and time). `--only` takes a
 * measure's function name, e.g. `--only silentSockets`. Figures depend on the machine; they are
 * reported, never asserted.
 *
 * @module
 */
import { deadline, delay } from "../src/async/deadline.ts";
import { TelnyxMediaClient } from "../tests/fakes/telnyx_media.ts";
import { placeAndAnswer } from "../tests/helpers/call_driver.ts";
import { waitFor } from "../tests/helpers/wait_for.ts";
import { type ServerWithFakes, spawnServerWithFakes } from "../tests/helpers/child_server.ts";
import { residentBytes } from "../tests/helpers/process_stats.ts";

/** Callee audio and what the fake STT counts: mu-law, 8000 bytes per second. */
const AUDIO_BYTES_PER_SECOND = 8000;
/** The fake Cartesia makes 10 ms of audio per character: this is about 25 s of speech. */
const LONG_GREETING = "This is the live call, and the bot keeps talking on it. ".repeat(45);
const SHORT_GREETING = "Hello, this is a short greeting.";
const VALID_KEYS = "0123456789ABCD*";

const mib = (bytes: number) => (bytes / 1048576).toFixed(0);
const secs = (ms: number) => (ms / 1000).toFixed(1);

/** How often the bench checks for what it waits for. */
const POLL_MS = 50;

/**
 * Whether `predicate` came to hold within `ms` (polled): the bench reports what did not happen
 * in its table rather than failing on it.
 */
function reached(predicate: () => boolean, what: string, ms: number): Promise<boolean> {
  return waitFor(predicate, what, ms, POLL_MS).then(() => true, () => false);
}

/** Samples a process's resident memory every 100 ms until `stop()`, which returns the peak. */
function watchPeakRss(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const sampling = (async () => {
    while (running) {
      peak = Math.max(peak, await residentBytes(pid).catch(() => 0));
      await delay(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await sampling;
      return peak;
    },
  };
}

/** TCP connections from this machine to `port` that are established (the server's clients). */
async function establishedTo(port: number): Promise<number> {
  let count = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await Deno.readTextFile(table).catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4) continue;
      const remotePort = parseInt(fields[2].split(":")[1], 16);
      if (remotePort === port && fields[3] === "01") count++;
    }
  }
  return count;
}

/** The server in a child process with its own fakes. */
type Rig = ServerWithFakes;

async function startRig(env: Record<string, string> = {}): Promise<Rig> {
  const rig = await spawnServerWithFakes({
    // Each call brings its own greeting, so one call can talk for long and the others briefly.
    FIRST_SPEAKER: "bot",
    GREETING: "{{greeting}}",
    SHUTDOWN_GRACE_SECONDS: "0",
    IDLE_TIMEOUT_SECONDS: "60",
    ...env,
  }, {
    openai: { whenQueueEmpty: () => ({ kind: "text", text: "Thank you, noted." }) },
    deepgram: { script: [] },
  });
  await delay(500); // let the child settle before its memory is read
  return rig;
}

interface Call {
  callSid: string;
  client: TelnyxMediaClient;
}

/** Places, answers and starts a call whose bot says `greeting`. */
async function startCall(
  rig: Rig,
  greeting = SHORT_GREETING,
  options: { echoMarks?: boolean } = {},
): Promise<Call> {
  const { callSid, streamUrl } = await placeAndAnswer(rig, { greeting });
  const client = await TelnyxMediaClient.connect(streamUrl, {
    callControlId: callSid,
    echoMarks: options.echoMarks,
  });
  client.start();
  return { callSid, client };
}

/** The call's `call summary` log line, once logged (bounded). */
async function summaryOf(rig: Rig, callSid: string): Promise<Record<string, unknown> | undefined> {
  const find = () => rig.server.lines.find((l) => l.msg === "call summary" && l.call === callSid);
  await reached(() => find() !== undefined, "the call summary", 10_000);
  return find();
}

/** A live call the bot is speaking on while the abuse runs; `end()` reports its playback. */
async function liveCall(rig: Rig): Promise<{ call: Call; end(): Promise<string> }> {
  const dgConnections = rig.deepgram.connections.length;
  const call = await startCall(rig, LONG_GREETING);
  // The callee's line streams (silence) as Telnyx's always does.
  call.client.streamAudio(new Uint8Array(0));
  // Its STT socket is up before the abuse starts, so later STT sockets are the abuser's.
  await reached(
    () => rig.deepgram.connections.length > dgConnections,
    "the live call's STT socket",
    5000,
  );
  await reached(() => call.client.playedBytes > 0, "the live call's audio", 5000);
  return {
    call,
    async end() {
      const alive = call.client.socket.readyState === WebSocket.OPEN;
      const played = call.client.playedBytes / AUDIO_BYTES_PER_SECOND;
      call.client.stop();
      await deadline(call.client.closed, 5000).catch(() => {});
      call.client.close();
      const summary = await summaryOf(rig, call.callSid);
      const underruns = summary?.underruns ?? "no summary";
      return `live call ${alive ? "up" : "ENDED"}, ${
        played.toFixed(1)
      } s played, ${underruns} underruns`;
    },
  };
}

async function endCall(call: Call): Promise<void> {
  call.client.stop();
  await deadline(call.client.closed, 5000).catch(() => {});
  await call.client.close();
}

type Row = [finding: string, before: string, now: string];

/**
 * A live call and an abusive one on `rig`, settled for a second; the server's RSS then, and its
 * peak from then on.
 */
async function abuseAlongsideLiveCall(rig: Rig) {
  const live = await liveCall(rig);
  const abuser = await startCall(rig);
  await delay(1000);
  const rssBefore = await residentBytes(rig.server.pid);
  const peak = watchPeakRss(rig.server.pid);
  return { live, abuser, rssBefore, peak };
}

/** 1. 150 DTMF "digits" of 64 KiB, then a burst of 150 valid key presses. */
async function oversizedDtmf(): Promise<Row[]> {
  await using rig = await startRig();
  const { live, abuser, rssBefore, peak } = await abuseAlongsideLiveCall(rig);
  const firstRequest = rig.openai.requests.length;
  const huge = JSON.stringify({
    event: "dtmf",
    stream_id: abuser.client.streamId,
    dtmf: { digit: "7".repeat(65_536) },
  });
  for (let i = 0; i < 150; i++) abuser.client.sendRaw(huge);
  await delay(1500);
  for (let i = 0; i < 150; i++) abuser.client.dtmf(VALID_KEYS[i % VALID_KEYS.length]);
  await reached(
    () => rig.openai.requests.length > firstRequest,
    "an LLM request after the key presses",
    10_000,
  );
  // Time for any further request a burst might cause.
  await delay(3000);
  const rssAfter = await residentBytes(rig.server.pid);
  const rssPeak = await peak.stop();
  const requests = rig.openai.requests.slice(firstRequest);
  const largest = Math.max(0, ...requests.map((r) => JSON.stringify(r.body).length));
  const inputs = rig.server.lines.filter((l) => l.msg === "dtmf input" && l.call === abuser.callSid)
    .map((l) => `${l.keys} keys, ${l.dropped} dropped`);
  await endCall(abuser);
  const playback = await live.end();
  return [[
    "150 DTMF digits of 64 KiB, then 150 valid keys: server RSS; LLM requests; largest LLM request",
    "123 → 1,262 MiB; one request per key; 2.69 MB",
    `${mib(rssBefore)} → ${mib(rssAfter)} MiB (peak ${mib(rssPeak)}); ${requests.length} ` +
    `request(s) from ${inputs.length} input(s) (${inputs.join(", ")}); ${
      (largest / 1000).toFixed(1)
    } kB; ${playback}`,
  ]];
}

/** 2. 300 `mark` frames with 1 MB names. */
async function oversizedMarks(): Promise<Row[]> {
  await using rig = await startRig();
  const { live, abuser, rssBefore, peak } = await abuseAlongsideLiveCall(rig);
  const frame = JSON.stringify({
    event: "mark",
    stream_id: abuser.client.streamId,
    mark: { name: "m".repeat(1_000_000) },
  });
  // A second round shows whether what the first one took is held, or reused.
  const rssAfterRound: number[] = [];
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 300; i++) abuser.client.sendRaw(frame);
    await delay(4000);
    rssAfterRound.push(await residentBytes(rig.server.pid));
  }
  await endCall(abuser);
  await delay(1500);
  const rssEnded = await residentBytes(rig.server.pid);
  const rssPeak = await peak.stop();
  const playback = await live.end();
  return [[
    "300 mark frames with 1 MB names (twice): server RSS before → after each round (peak) → " +
    "call ended",
    "311 MiB held until the call ended",
    `${mib(rssBefore)} → ${rssAfterRound.map(mib).join(" → ")} (peak ${mib(rssPeak)}) → ${
      mib(rssEnded)
    } MiB; ${playback}`,
  ]];
}

/** 3. Media floods: 1,000 frames/s for 10 s, and frames of almost 1 MiB for 10 s. */
async function mediaFlood(): Promise<Row[]> {
  await using rig = await startRig();
  const rows: Row[] = [];
  const floods = [
    {
      name: "media flood, 1,000 frames/s of 20 ms for 10 s: audio Deepgram received",
      before: "about 200 s",
      payload: new Uint8Array(160).fill(0xff),
      perTick: 10,
      tickMs: 10,
    },
    {
      // Base64 of 786,000 bytes is about 1,048,000 characters: a frame of almost 1 MiB.
      name: "media frames of almost 1 MiB, 20/s for 10 s: audio Deepgram received",
      before: "about 1,975 s",
      payload: new Uint8Array(786_000).fill(0xff),
      perTick: 1,
      tickMs: 50,
    },
  ];
  for (const flood of floods) {
    const live = await liveCall(rig);
    const firstConnection = rig.deepgram.connections.length;
    const abuser = await startCall(rig);
    await reached(
      () => rig.deepgram.connections.length > firstConnection,
      "the abuser's STT socket",
      5000,
    );
    const startedAt = performance.now();
    let frames = 0;
    for (let tick = 0; tick < 10_000 / flood.tickMs; tick++) {
      if (performance.now() - startedAt >= 10_000) break;
      for (let i = 0; i < flood.perTick; i++) abuser.client.media(flood.payload);
      frames += flood.perTick;
      await delay(flood.tickMs);
    }
    const floodMs = performance.now() - startedAt;
    await delay(1000);
    const bytes = rig.deepgram.connections.slice(firstConnection)
      .reduce((n, c) => n + c.bytesReceived, 0);
    await endCall(abuser);
    const playback = await live.end();
    rows.push([
      flood.name,
      flood.before,
      `${(bytes / AUDIO_BYTES_PER_SECOND).toFixed(1)} s of audio from ${frames} frames in ${
        secs(floodMs)
      } s; ${playback}`,
    ]);
  }
  return rows;
}

/**
 * 4. Calls that never end: 20 calls whose mark echoes are withheld, with IDLE_TIMEOUT_SECONDS=5,
 * and 20 calls whose callee hangs up during the agent's start-up.
 */
async function callsThatNeverEnd(): Promise<Row[]> {
  await using rig = await startRig({ IDLE_TIMEOUT_SECONDS: "5" });
  const live = await liveCall(rig);
  const startedAt = performance.now();
  const endedAfter: number[] = [];
  const silent: Call[] = [];
  for (let i = 0; i < 20; i++) {
    const call = await startCall(rig, SHORT_GREETING, { echoMarks: false });
    const callStartedAt = performance.now();
    call.client.closed.then(() => endedAfter.push(performance.now() - callStartedAt));
    silent.push(call);
  }
  const hungUpEarly: string[] = [];
  for (let i = 0; i < 20; i++) {
    const call = await startCall(rig);
    call.client.stop();
    await call.client.close();
    hungUpEarly.push(call.callSid);
  }
  await delay(Math.max(0, 35_000 - (performance.now() - startedAt)));
  const playback = await live.end();
  await delay(Math.max(0, 40_000 - (performance.now() - startedAt)));
  const deepgramPort = Number(new URL(rig.deepgram.url).port);
  const cartesiaPort = Number(new URL(rig.cartesia.baseURL).port);
  const sttOpen = await establishedTo(deepgramPort);
  const ttsOpen = await establishedTo(cartesiaPort);
  const stillOpen = silent.filter((c) => c.client.socket.readyState === WebSocket.OPEN).length;
  const sorted = endedAfter.toSorted((a, b) => a - b);
  const early = new Set(hungUpEarly);
  const prompted =
    rig.server.lines.filter((l) => l.msg === "callee idle; prompting" && early.has(String(l.call)))
      .length;
  for (const call of silent) await call.client.close();
  return [
    [
      "20 calls with IDLE_TIMEOUT_SECONDS=5 and mark echoes withheld: ended by 40 s; time to end; " +
      "vendor sockets open at 40 s",
      "0 of 100 ended; 200 vendor sockets open",
      `${sorted.length} of 20 ended (${stillOpen} still open), in ${
        sorted.length ? secs(sorted[0]) : "–"
      } s (first) to ${
        sorted.length ? secs(sorted.at(-1)!) : "–"
      } s (last); ${sttOpen} STT + ${ttsOpen} TTS ` +
      `sockets open; ${playback}`,
    ],
    [
      '20 calls hung up during the agent\'s start-up: "callee idle; prompting" afterwards',
      "20 of 20",
      `${prompted} of 20 (waited ${secs(performance.now() - startedAt)} s)`,
    ],
  ];
}

/** 5. A forged `start` naming another live call, on a valid Stream URL of the attacker's. */
async function forgedStart(): Promise<Row[]> {
  await using rig = await startRig();
  const live = await liveCall(rig);
  const victim = live.call.callSid;
  const { streamUrl } = await placeAndAnswer(rig, { greeting: SHORT_GREETING });
  const attacker = await TelnyxMediaClient.connect(streamUrl, { callControlId: victim });
  attacker.start();
  const closed = await deadline(attacker.closed, 5000).catch(() => undefined);
  await delay(1000);
  const health = await (await fetch(`${rig.server.url}/health`)).json();
  const victimLive = live.call.client.socket.readyState === WebSocket.OPEN;
  const hangups = rig.telnyx.hangupRequests(victim).length;
  await attacker.close();
  const playback = await live.end();
  return [[
    "forged start with a live call's call_control_id on a valid Stream URL",
    "victim hung up (200); /health 0 calls while it was live",
    `attacker closed ${closed ? closed.code : "NOT"}; victim ${
      victimLive ? "still live" : "ENDED"
    }; ${hangups} hang-up(s) of the victim; /health active_calls ${health.active_calls}; ${playback}`,
  ]];
}

/** Outcome of one raw upgrade that never sends `start`. */
interface SilentUpgrade {
  conn: Deno.TcpConn;
  status: number;
}

/** A raw WebSocket upgrade over TCP; the peer then reads nothing more and sends nothing. */
async function silentUpgrade(wsUrl: URL): Promise<SilentUpgrade> {
  const conn = await Deno.connect({ hostname: wsUrl.hostname, port: Number(wsUrl.port) });
  await conn.write(new TextEncoder().encode(
    `GET ${wsUrl.pathname}${wsUrl.search} HTTP/1.1\r\nHost: ${wsUrl.host}\r\n` +
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  ));
  const buffer = new Uint8Array(512);
  const n = await deadline(conn.read(buffer), 5000).catch(() => null);
  const head = n ? new TextDecoder().decode(buffer.subarray(0, n)) : "";
  return { conn, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0) };
}

/** Whether the server has closed this connection: reads until EOF, for at most `ms`. */
async function closedByServer(conn: Deno.TcpConn, ms: number): Promise<boolean> {
  const buffer = new Uint8Array(4096);
  const due = performance.now() + ms;
  while (performance.now() < due) {
    const n = await deadline(conn.read(buffer), Math.max(1, due - performance.now()))
      .catch((error) => (error instanceof Deno.errors.ConnectionReset ? null : -1));
    if (n === null) return true;
    if (n === -1) return false;
  }
  return false;
}

/**
 * 6 and 8. 3,000 `/ws` upgrades from one client that never send `start`, and what each costs.
 * The attacker holds no signed URL (it has no login), so every upgrade is on a bare `/ws`.
 */
async function silentSockets(): Promise<Row[]> {
  const startTimeoutMs = 10_000;
  await using rig = await startRig({ MEDIA_START_TIMEOUT_MS: String(startTimeoutMs) });
  const live = await liveCall(rig);
  const rssBefore = await residentBytes(rig.server.pid);
  const peak = watchPeakRss(rig.server.pid);
  const wsUrl = new URL(`${rig.server.url.replace(/^http/, "ws")}/ws`);
  const upgrades: SilentUpgrade[] = [];
  const startedAt = performance.now();
  for (let i = 0; i < 3000 && performance.now() - startedAt < 60_000; i += 50) {
    const batch = await Promise.allSettled(
      Array.from({ length: 50 }, () => silentUpgrade(wsUrl)),
    );
    for (const r of batch) if (r.status === "fulfilled") upgrades.push(r.value);
  }
  const openedMs = performance.now() - startedAt;
  const healthDuring = await (await fetch(`${rig.server.url}/health`)).json();
  const rssOpen = await residentBytes(rig.server.pid);
  // A new call from the same address while the sockets are held.
  const newCall = await startCall(rig).then((c) => c, () => undefined);
  const newCallStarted = newCall !== undefined &&
    await reached(() => newCall.client.playedBytes > 0, "the new call's audio", 5000);
  if (newCall) await endCall(newCall);
  await delay(Math.max(0, startTimeoutMs + 2000 - (performance.now() - startedAt)));
  const stillOpen = await Promise.all(
    upgrades.map(async (u) => !await closedByServer(u.conn, 1000)),
  );
  const healthAfter = await (await fetch(`${rig.server.url}/health`)).json();
  const rssPeak = await peak.stop();
  const accepted = upgrades.filter((u) => u.status === 101);
  const refused = upgrades.filter((u) => u.status === 429 || u.status === 503).length;
  const other = upgrades.length - accepted.length - refused;
  const acceptedStillOpen = upgrades.filter((u, i) => u.status === 101 && stillOpen[i]).length;
  for (const u of upgrades) {
    try {
      u.conn.close();
    } catch { /* closed already */ }
  }
  const playback = await live.end();
  return [
    [
      "3,000 /ws upgrades from one client that never send start: accepted / refused (429, 503); " +
      `still open ${secs(startTimeoutMs + 2000)} s later; /health pending`,
      "3,000 accepted, all still open after 120 s; not counted by /health",
      `${accepted.length} accepted (101), ${refused} refused, ${other} other, in ${
        secs(openedMs)
      } s; still open: ${acceptedStillOpen} of the upgraded, ${
        stillOpen.filter(Boolean).length - acceptedStillOpen
      } of the refused (HTTP keep-alive); pending ${healthDuring.pending_media_sockets} → ${healthAfter.pending_media_sockets}; ` +
      `a new call from the same address meanwhile ${
        newCallStarted ? "served" : "NOT served"
      }; ${playback}`,
    ],
    [
      "memory per abusive socket (server RSS growth / sockets)",
      "–",
      `${((rssOpen - rssBefore) / Math.max(1, upgrades.length) / 1024).toFixed(1)} KiB per ` +
      `connection (${mib(rssBefore)} → ${mib(rssOpen)} MiB, peak ${
        mib(rssPeak)
      } MiB, ${upgrades.length} connections)`,
    ],
  ];
}

/** 7. SIGTERM with 3 live calls, a Telnyx that never answers hang-ups and 5 s of grace. */
async function shutdownWithHangingTelnyx(): Promise<Row[]> {
  await using rig = await startRig({ SHUTDOWN_GRACE_SECONDS: "5" });
  const calls = [await startCall(rig, LONG_GREETING), await startCall(rig), await startCall(rig)];
  await reached(() => calls.every((c) => c.client.playedBytes > 0), "every call's audio", 5000);
  rig.telnyx.hangupBehaviour = "hang";
  const signalledAt = performance.now();
  rig.server.process.kill("SIGTERM");
  const status = await deadline(rig.server.process.status, 60_000).catch(() => undefined);
  const exitMs = performance.now() - signalledAt;
  if (!status) rig.server.process.kill("SIGKILL");
  const hangups = rig.telnyx.hangupRequests().length;
  for (const call of calls) await call.client.close();
  return [[
    "SIGTERM with 3 live calls, Telnyx never answers hang-ups, SHUTDOWN_GRACE_SECONDS=5: " +
    "time to exit",
    "15.5 s",
    status
      ? `${secs(exitMs)} s (exit code ${status.code}; ${hangups} hang-up requests sent)`
      : "did not exit within 60 s",
  ]];
}

if (import.meta.main) {
  const rows: Row[] = [];
  for (
    const measure of [
      oversizedDtmf,
      oversizedMarks,
      mediaFlood,
      callsThatNeverEnd,
      forgedStart,
      silentSockets,
      shutdownWithHangingTelnyx,
    ]
  ) {
    // `--only <name>` (repeatable) runs just those measures, by function name.
    const only = Deno.args.flatMap((a, i) => (Deno.args[i - 1] === "--only" ? [a] : []));
    if (only.length > 0 && !only.includes(measure.name)) continue;
    const startedAt = performance.now();
    rows.push(...await measure());
    console.error(`${measure.name}: ${secs(performance.now() - startedAt)} s`);
  }
  const cell = (text: string) => text.replaceAll("|", "\\|");
  console.log(
    [
      "| finding | before (from the issue) | now |",
      "|---|---|---|",
      ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`),
    ].join("\n"),
  );
}
