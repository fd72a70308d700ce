/**
 * Whole-call benchmarks against loopback fakes (real SDKs, real sockets, real-time callee
 * audio). Prints p50/p95/max for:
 *
 * - voice to voice, for `STT_ENGINE=nova` and `flux`, with the fakes as slow as the real vendors
 *   (Deepgram's final 300 ms after the voice, OpenAI's first token at 350 ms then one per 20 ms,
 *   Cartesia's first audio at 120 ms then 5x real time): the end of the callee's voice (the
 *   frame carrying its last sample going out) → the first answer frame at the callee, beside the
 *   floor those delays add up to;
 * - turn reply: turn decided → first outbound media frame, and the part of it that is ours
 *   (what is left once the turn was decided and the LLM and TTS waits are over);
 * - barge-in: the frame carrying the callee's speech onset → `clear` received by the fake
 *   Telnyx (instant fakes: it measures our reaction only);
 * - greeting: callee's first utterance decided over → first greeting frame (and from the frame
 *   carrying the end of their voice, VAD hang-over included);
 * - load: N concurrent calls on a server in a child process: playback underruns, CPU seconds per
 *   call-minute and resident memory per call. The vendors run at the same realistic pace and
 *   Cartesia's audio is as long as speech (`--instant-vendors`: as fast as the fakes go).
 *
 * Run: `deno task bench` (after the micro benchmarks), or
 * `deno run -A --cert tests/fakes/tls/ca.pem bench/calls.ts [--calls 300] [--seconds 30] [--skip-load]`.
 *
 * The voice-to-voice server runs on the first CPU this process may use and this process on the
 * others when `taskset` and a second CPU allow (`--pin-server` names the server's CPUs instead,
 * and then this process is left where it runs).
 *
 * Load options: `--records memory|file` (the server's call records in KV `:memory:`, the
 * default, or in a fresh KV file under /tmp), `--webhooks` (every call's events signed and
 * posted to a loopback receiver in a process of its own, so the callers here do not delay it;
 * the `call.ended` events are counted and timed), and
 * `--pin-server 0` (the server's threads on these CPUs; run the bench itself under
 * `taskset -c 1` to keep the two apart), `--hangup-spread-seconds 10` (callers hang up one by
 * one over that long rather than all at once), `--workers 2` (the server's WORKERS),
 * `--socket-queues` (every second, the data the server's sockets and this process's have received
 * and not read yet: the side that falls behind leaves it there; off by default, as the sampling
 * takes this process's CPU).
 *
 * `--capacity` (what `deno task bench` runs) replaces the single load run by a search: the
 * server (WORKERS=1) pinned to the first CPU it may use and this process (fakes and callers) to
 * the others, at each of `--steps 100,150,200,250,300` calls, reporting the highest with no
 * underrun; with `--scaling`, then one server process per core over every CPU, sharing them
 * with this process, at the same counts. It prints both sides' CPU, CPU per call-minute and
 * memory per call.
 * Figures depend on the machine; they are reported, never asserted.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { delay, settledWithin } from "../src/async/deadline.ts";
import { percentile } from "../src/session/call_metrics.ts";
import type { TurnMetrics } from "../src/session/call_metrics.ts";
import { TelnyxMediaClient } from "../tests/fakes/telnyx_media.ts";
import { startWebhookReceiverProcess } from "../tests/webhooks/receiver_process.ts";
import { placeAndAnswer } from "../tests/helpers/call_driver.ts";
import { CallerTimeline } from "../tests/helpers/caller_timeline.ts";
import { waitFor } from "../tests/helpers/wait_for.ts";
import { serverPids, spawnServerWithFakes } from "../tests/helpers/child_server.ts";
import {
  cpuSeconds,
  pinThreads,
  residentBytes,
  serverAndLoadCpus,
  socketInodes,
  unreadSocketBytes,
} from "../tests/helpers/process_stats.ts";
import {
  REALISTIC_FLOOR_MS,
  REALISTIC_PACE,
  startVoiceHarness,
} from "../tests/helpers/voice_harness.ts";

/** One sample at 8 kHz: a voice's last sample is this far before its end. */
const SAMPLE_MS = 1000 / 8000;

const LONG_ANSWER = "Well, there is quite a lot to say about that. " +
  "First of all, your account has several features you may not know about. " +
  "Second, we have a new offer this month that could save you money. " +
  "Third, there is our new mobile app, which makes everything a little easier.";

/** The answer of every turn in {@link load}: two sentences, about six seconds of speech. */
const LOAD_ANSWER = "Well, there is quite a lot to say about that. " +
  "First of all, your account has several features.";
/**
 * Audio per character of text in {@link load}: 65 ms at 8 kHz, about 15 characters a second,
 * the pace of conversational speech (the fake's default is far shorter, which makes a first
 * clause like "Well," last 50 ms and turns any later continuation into a gap).
 */
const SPEECH_BYTES_PER_CHAR = 520;

/**
 * Starts `count` calls 137 ms apart, so their turns do not all hit the fakes in the same
 * millisecond (which would measure the fakes' queueing, not a turn).
 */
async function staggered<T>(count: number, start: () => Promise<T>): Promise<T[]> {
  const calls: Promise<T>[] = [];
  for (let i = 0; i < count; i++) {
    calls.push(start());
    await delay(137);
  }
  return await Promise.all(calls);
}

function row(name: string, values: number[], target: string): string {
  const f = (v: number | undefined) => (v === undefined ? "–" : v.toFixed(2));
  return `| ${name} | ${values.length} | ${f(percentile(values, 50))} | ${
    f(percentile(values, 95))
  } | ${f(percentile(values, 100))} | ${target} |`;
}

/**
 * Turns and greetings: 20 concurrent calls on `engine` in this process (so each turn's own
 * metrics can be read), each a greeting and three questions, against fakes that answer as slowly
 * as the real vendors ({@link REALISTIC_PACE}).
 */
async function turnLatency(engine: "nova" | "flux"): Promise<string[]> {
  const caller = CallerTimeline.answeredWithHello(1500);
  for (let i = 0; i < 3; i++) {
    caller.say("account_tier", "Can you tell me my account tier?").pause(1500);
  }
  await using v = await startVoiceHarness({
    caller,
    env: { STT_ENGINE: engine },
    pace: REALISTIC_PACE,
  });
  const calls = await staggered(20, () => v.call());
  await delay(caller.durationMs + 1500);
  const turns: TurnMetrics[] = calls.flatMap((c) => c.agent.metrics.turns);
  const greetingFrames: number[] = [];
  for (const { client } of calls) {
    const helloEnd = client.frameDueAt(caller.speech[0].endMs - SAMPLE_MS);
    const first = client.received.findIndex((f) => f.event === "media");
    if (first >= 0) greetingFrames.push(client.receivedAt[first] - helloEnd);
  }
  for (const { client, session } of calls) {
    client.stop();
    await session.ended;
  }
  const answers = turns.filter((t) => t.trigger === "callee");
  const label = `STT_ENGINE=${engine}`;
  return [
    row(`${label}: reply: turn decided → first frame`, answers.map((t) => t.replyMs!), "–"),
    row(
      `${label}: ours: first frame minus the turn and LLM/TTS waits`,
      answers.map((t) => t.overheadMs!),
      "p95 ≤ 5 ms",
    ),
    row(`${label}: LLM time to first token (fake)`, answers.map((t) => t.llmTtftMs!), "–"),
    row(
      `${label}: LLM first token → first TTS request`,
      answers.flatMap((t) => t.firstTokenToTtsMs === undefined ? [] : [t.firstTokenToTtsMs]),
      "–",
    ),
    row(`${label}: greeting: turn decided → first frame`, greetings(turns), "≤ 30 ms"),
    row(`${label}: greeting: end of voice → first frame (client)`, greetingFrames, "–"),
  ];
}

function greetings(turns: TurnMetrics[]): number[] {
  return turns.filter((t) => t.trigger === "greeting").map((t) => t.replyMs!);
}

/**
 * Voice to voice on `engine`: the server alone in a child process (as in production, where the
 * vendors and callers are elsewhere), fakes as slow as the real vendors ({@link REALISTIC_PACE}),
 * 20 calls of three questions each. Measured at the callee: the end of each question's voice →
 * the first frame of the answer.
 */
async function voiceToVoice(engine: "nova" | "flux", pinServerCpus?: string): Promise<string[]> {
  const caller = CallerTimeline.answeredWithHello(1500);
  for (let i = 0; i < 3; i++) {
    caller.say("account_tier", "Can you tell me my account tier?").pause(1500);
  }
  await using rig = await spawnServerWithFakes(
    { STT_ENGINE: engine, SHUTDOWN_GRACE_SECONDS: "0" },
    {
      openai: {
        whenQueueEmpty: () => ({ kind: "text", text: "Sure, happy to help." }),
        pace: REALISTIC_PACE.llm,
      },
      deepgram: { script: caller.segments, finalDelayMs: REALISTIC_PACE.sttFinalMs, relay: false },
      cartesia: { pace: REALISTIC_PACE.tts },
    },
  );
  if (pinServerCpus) await pinThreads(rig.server.pid, pinServerCpus);
  const audio = caller.audio();
  const clients = await staggered(20, async () => {
    const { callSid, streamUrl } = await placeAndAnswer(rig, { name: "Zoë" });
    const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
    client.start();
    client.streamAudio(audio);
    return client;
  });
  await delay(caller.durationMs + 1500);
  const answerFrames: number[] = [];
  for (const client of clients) {
    for (const question of caller.speech.slice(1)) {
      const voiceEnd = client.frameDueAt(question.endMs - SAMPLE_MS);
      const i = client.received.findIndex((f, k) =>
        f.event === "media" && client.receivedAt[k] >= voiceEnd
      );
      if (i >= 0) answerFrames.push(client.receivedAt[i] - voiceEnd);
    }
  }
  for (const client of clients) client.stop();
  await Promise.all(clients.map((c) => c.closed));
  const summaries = () => rig.server.lines.filter((l) => l.msg === "call summary");
  await waitFor(() => summaries().length >= clients.length, "every call's summary", 10_000, 100)
    .catch(() => {});
  const turns = rig.server.lines.filter((l) => l.msg === "turn" && l.trigger === "callee");
  const numbers = (key: string) =>
    turns.flatMap((l) => typeof l[key] === "number" ? [l[key] as number] : []);
  const sum = (key: string) => summaries().reduce((n, l) => n + Number(l[key] ?? 0), 0);
  const p50 = percentile(answerFrames, 50);
  const excess = p50 === undefined ? "–" : `+${(p50 - REALISTIC_FLOOR_MS).toFixed(0)}`;
  const label = `STT_ENGINE=${engine}`;
  return [
    row(
      `${label}: end of the callee's voice → first answer frame (floor ${REALISTIC_FLOOR_MS}, ours ${excess})`,
      answerFrames,
      `p50 ≤ ${REALISTIC_FLOOR_MS + 30} ms`,
    ),
    row(`${label}: LLM time to first token`, numbers("llmTtftMs"), "–"),
    row(`${label}: LLM first token → first TTS request`, numbers("firstTokenToTtsMs"), "–"),
    row(
      `${label}: TTS first phrase → first audio (incl. the row above)`,
      numbers("ttsTtfbMs"),
      "–",
    ),
    `| ${label}: speculative answers (wasted) | ${sum("speculative_replies")} (${
      sum("speculative_replies_wasted")
    }) | | | | – |`,
  ];
}

/** Barge-ins: 10 concurrent calls, two interruptions each. */
async function bargeInLatency(): Promise<string[]> {
  const caller = CallerTimeline.answeredWithHello(1500);
  for (let i = 0; i < 2; i++) {
    caller.say("yes_zoe", "Yes, this is Zoë. What is this about?").pause(900)
      .say("barge_in", "Wait, stop, I have a question.").pause(1500);
  }
  await using v = await startVoiceHarness({
    caller,
    whenQueueEmpty: (body) => {
      const messages = body.messages as { content: string }[];
      const last = String(messages.at(-1)?.content ?? "");
      return { kind: "text", text: last.includes("Wait") ? "Of course." : LONG_ANSWER };
    },
  });
  const calls = await staggered(10, () => v.call());
  await delay(caller.durationMs + 1000);
  const reactions: number[] = [];
  for (const { client } of calls) {
    for (const segment of caller.speech.filter((s) => s.text.startsWith("Wait"))) {
      const onset = client.frameDueAt(segment.startMs);
      const i = client.received.findIndex((f, k) =>
        f.event === "clear" && client.receivedAt[k] >= onset
      );
      if (i >= 0) reactions.push(client.receivedAt[i] - onset);
    }
  }
  const bargeIns = calls.reduce((n, c) => n + c.agent.metrics.bargeIns, 0);
  for (const { client, session } of calls) {
    client.stop();
    await session.ended;
  }
  return [
    row(`barge-in: speech onset → clear (${bargeIns} barge-ins)`, reactions, "p95 ≤ 200 ms"),
  ];
}

/** Samples how late a 10 ms interval fires in this process, until `stop()`. */
function watchEventLoopLag(): { stop(): { p99: number; max: number } } {
  const lateness: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    lateness.push(Math.max(0, now - last - 10));
    last = now;
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return { p99: percentile(lateness, 99) ?? 0, max: percentile(lateness, 100) ?? 0 };
    },
  };
}

/** While calls are starting, their sockets are listed at every sample; then every this many. */
const SOCKET_RELIST_SAMPLES = 5;

/**
 * Samples, every second until `stop()`, the data waiting unread in the kernel's receive
 * queues of the server (`serverPids()`) and of this process (the fakes and callers): whichever
 * side falls behind leaves it there. A failed sample (e.g. /proc not readable) ends the sampling
 * and is reported by `stop()`, never thrown, so the run and its clean-up go on.
 */
function watchUnreadSocketData(serverPids: () => number[]): {
  /** The calls are all up: their sockets need listing less often. */
  rampEnded(): void;
  stop(): Promise<{ server: UnreadSummary; bench: UnreadSummary; error?: unknown }>;
} {
  const server: number[] = [];
  const bench: number[] = [];
  const stopping = new AbortController();
  let ramping = true;
  let error: unknown;
  const sampling = (async () => {
    let sides: Set<string>[] = [];
    for (let sample = 0; !stopping.signal.aborted; sample++) {
      // Listing every socket of both processes costs far more than reading the queues: once the
      // calls are up, their sockets change only as they end.
      if (ramping || sample % SOCKET_RELIST_SAMPLES === 0) {
        sides = [await socketInodes(serverPids()), await socketInodes([Deno.pid])];
      }
      const [ofServer, ofBench] = await unreadSocketBytes(sides);
      server.push(ofServer);
      bench.push(ofBench);
      await delay(1000, stopping.signal).catch(() => {});
    }
  })().catch((failure) => error = failure);
  const summary = (bytes: number[]): UnreadSummary => ({
    p50KiB: (percentile(bytes, 50) ?? 0) / 1024,
    maxKiB: (percentile(bytes, 100) ?? 0) / 1024,
  });
  return {
    rampEnded() {
      ramping = false;
    },
    async stop() {
      stopping.abort();
      await sampling;
      return { server: summary(server), bench: summary(bench), error };
    },
  };
}

/** Unread socket data over a run's samples. */
export interface UnreadSummary {
  p50KiB: number;
  maxKiB: number;
}

/** Extras for {@link load} (used by `bench/profile_server.ts`). */
export interface LoadOptions {
  /** Extra `deno run` flags for the server process. */
  serverDenoFlags?: string[];
  /** Filled in by `load`: `performance.now()` when the server was spawned, when every call was
   * up and when the calls were stopped. */
  marks?: { spawnedAt?: number; loadedAt?: number; stoppedAt?: number };
  /** Pause between batches of 10 new calls while ramping up (default 50 ms). */
  rampBatchMs?: number;
  /** Where the server keeps call records: KV `:memory:` (default) or a fresh file under /tmp. */
  records?: "memory" | "file";
  /** Posts every call's webhook events to a loopback receiver in a process of its own. */
  webhooks?: boolean;
  /**
   * `taskset` CPU list for every thread of the server, e.g. "0" (its server processes too, with
   * `workers` above 1: they inherit it).
   */
  pinServerCpus?: string;
  /** Callers hang up one by one over this long instead of all at once (default 0). */
  hangupSpreadMs?: number;
  /**
   * Samples the data waiting unread in the server's and this process's sockets every second
   * (`--socket-queues`). Off by default: listing the sockets takes this process's CPU, and the
   * counts of the capacity search should not pay for a diagnosis.
   */
  socketQueues?: boolean;
  /** The server's `WORKERS` (default 1: one process, no supervisor). */
  workers?: number;
  /**
   * `realistic` (default): the vendors at {@link REALISTIC_PACE} and speech at the pace of
   * speech. `instant`: tokens and audio as fast as the fakes can, text spoken ~7x too fast.
   */
  vendors?: "realistic" | "instant";
  /** Filled in by `load`: the figures its rows show, for the capacity search. */
  result?: Partial<LoadResult>;
}

/** One load run's figures. */
export interface LoadResult {
  calls: number;
  /** Calls whose summary was logged (the others did not end cleanly). */
  summaries: number;
  underruns: number;
  /**
   * Of `underruns`, those whose audio had not reached the playback yet: late from the fakes, or
   * unread in the server's sockets (the rest: sends ran late).
   */
  underrunsAwaitingAudio: number;
  callsWithUnderrun: number;
  /** Server CPU seconds (every process of it) per call-minute. */
  cpuPerCallMinute: number;
  /** Server CPU seconds per wall second while loaded. */
  serverCoresBusy: number;
  /** The same for this process (fakes and callers). */
  benchCoresBusy: number;
  benchLagP99Ms: number;
  /**
   * Data the server's sockets had received and it had not read yet, over the loaded window
   * (with `socketQueues`).
   */
  serverUnread?: UnreadSummary;
  /** The same for this process: the fakes and callers. */
  benchUnread?: UnreadSummary;
  /** Peak resident memory above idle, per call, every server process together. */
  kibPerCall: number;
}

/** The `call.ended` events a receiver has, by call id. */
function endedCallIds(bodies: string[]): Set<string> {
  const ids = new Set<string>();
  for (const body of bodies) {
    const event = JSON.parse(body) as { type?: string; data?: { id?: string } };
    if (event.type === "call.ended") ids.add(String(event.data?.id));
  }
  return ids;
}

/** N concurrent calls against a server in a child process. */
export async function load(
  count: number,
  seconds: number,
  options: LoadOptions = {},
): Promise<string[]> {
  const instant = options.vendors === "instant";
  // Pauses long enough for the greeting and each answer to end before the callee speaks again,
  // at the pace of speech: the load has no barge-ins.
  const pauseMs = instant ? 6000 : 8000;
  const caller = CallerTimeline.answeredWithHello(pauseMs - 1000)
    .say("account_tier", "Can you tell me my account tier?").pause(pauseMs)
    .say("yes_zoe", "Yes, this is Zoë. What is this about?").pause(pauseMs);
  const receiver = options.webhooks ? await startWebhookReceiverProcess() : undefined;
  const kvDir = options.records === "file"
    ? await Deno.makeTempDir({ prefix: "calls-bench-kv-" })
    : undefined;
  if (options.marks) options.marks.spawnedAt = performance.now();
  const rig = await spawnServerWithFakes({
    WORKERS: String(options.workers ?? 1),
    SHUTDOWN_GRACE_SECONDS: "0",
    IDLE_TIMEOUT_SECONDS: "60",
    ...(kvDir ? { KV_PATH: `${kvDir}/calls.sqlite3` } : {}),
    ...(receiver
      ? { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: "bench-webhook-secret-0123456789" }
      : {}),
  }, {
    ...(instant
      ? {
        openai: { whenQueueEmpty: () => ({ kind: "text", text: LONG_ANSWER }) },
        deepgram: { script: caller.segments },
      }
      : {
        openai: {
          whenQueueEmpty: () => ({ kind: "text", text: LOAD_ANSWER }),
          pace: REALISTIC_PACE.llm,
        },
        // Straight to the fake, as to the real Deepgram: its relay (for cut-connection tests)
        // copies every chunk through this process's event loop.
        deepgram: {
          script: caller.segments,
          finalDelayMs: REALISTIC_PACE.sttFinalMs,
          relay: false,
        },
        cartesia: { pace: REALISTIC_PACE.tts, bytesPerChar: SPEECH_BYTES_PER_CHAR },
      }),
    denoFlags: [...(options.serverDenoFlags ?? []), ...(kvDir ? [`--allow-write=${kvDir}`] : [])],
    // Pinned from its start, so that the server processes a supervisor starts inherit it.
    cpuList: options.pinServerCpus,
  });
  const { server } = rig;
  // With a supervisor, the server is it and its server processes.
  const pids = () => [...new Set([server.pid, ...serverPids(server)])];
  const serverCpu = async () =>
    (await Promise.all(pids().map(cpuSeconds))).reduce((a, b) => a + b, 0);
  const serverRss = async () =>
    (await Promise.all(pids().map(residentBytes))).reduce((a, b) => a + b, 0);

  await delay(500);
  const idleRss = await serverRss();
  const audio = caller.audio();
  const clients: TelnyxMediaClient[] = [];
  const cpuBefore = await serverCpu();
  const ownCpuBefore = await cpuSeconds(Deno.pid);
  const startedAt = performance.now();
  // The fakes (LLM, TTS, STT) and the callers share this process's event loop: when it lags,
  // replies stream late and playback underruns that are the bench's, not the server's.
  const lag = watchEventLoopLag();
  const unread = options.socketQueues ? watchUnreadSocketData(pids) : undefined;
  /** A run that fails leaves nothing behind for the next one: no timer, call or process. */
  const abandon = async () => {
    lag.stop();
    await unread?.stop();
    for (const client of clients) client.stop();
    await rig[Symbol.asyncDispose]();
    await receiver?.close();
    if (kvDir) await Deno.remove(kvDir, { recursive: true });
  };
  // Ramp up in small batches, as real traffic arrives.
  try {
    for (let i = 0; i < count; i += 10) {
      await Promise.all(Array.from({ length: Math.min(10, count - i) }, async () => {
        const { callSid, streamUrl } = await placeAndAnswer(rig, { name: "Zoë" });
        const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
        client.start();
        client.streamAudio(audio);
        clients.push(client);
      }));
      await delay(options.rampBatchMs ?? 50);
    }
  } catch (error) {
    await abandon();
    throw error;
  }
  const rampMs = performance.now() - startedAt;
  unread?.rampEnded();
  if (options.marks) options.marks.loadedAt = performance.now();
  await delay(Math.max(0, seconds * 1000 - rampMs));
  let peakRss: number;
  try {
    peakRss = await serverRss();
  } catch (error) {
    // E.g. the server exited under load: its /proc entry is gone.
    await abandon();
    throw error;
  }
  const benchLag = lag.stop();
  const unreadData = await unread?.stop();
  if (unreadData?.error) console.error("socket queue sampling stopped:", unreadData.error);
  const activeMs = performance.now() - startedAt;
  const cpuUsed = (await serverCpu()) - cpuBefore;
  const ownCpu = (await cpuSeconds(Deno.pid)) - ownCpuBefore;
  if (options.marks) options.marks.stoppedAt = performance.now();
  const stoppingAt = performance.now();
  for (const client of clients) {
    client.stop();
    if (options.hangupSpreadMs) await delay(options.hangupSpreadMs / count);
  }
  // Bounded: a socket the server never closes is seen in the summaries below, not waited for.
  await settledWithin(Promise.all(clients.map((c) => c.closed)), 30_000);
  // Each call logs its summary once its vendor sockets have closed.
  await waitFor(
    () => server.lines.filter((l) => l.msg === "call summary").length >= count,
    "every call's summary",
    10_000,
    100,
  ).catch(() => {});
  // Then every call's `call.ended` (bounded: a missing one is reported, not waited for).
  if (receiver) {
    await waitFor(
      () => endedCallIds(receiver.received.map((r) => r.body)).size >= count,
      "every call's call.ended",
      30_000,
      100,
    ).catch(() => {});
  }
  const windDownMs = performance.now() - stoppingAt;
  const cpuWithWindDown = (await serverCpu()) - cpuBefore;

  const summaries = server.lines.filter((l) => l.msg === "call summary");
  const underruns = summaries.reduce((n, l) => n + Number(l.underruns ?? 0), 0);
  const withUnderrun = summaries.filter((l) => Number(l.underruns ?? 0) > 0).length;
  const awaitingAudio = summaries.reduce((n, l) => n + Number(l.underruns_awaiting_audio ?? 0), 0);
  const turns = server.lines.filter((l) => l.msg === "turn" && l.trigger === "callee");
  const replies = turns.map((l) => Number(l.replyMs));
  const callMinutes = (count * activeMs) / 60_000;
  const ended = receiver ? endedCallIds(receiver.received.map((r) => r.body)) : undefined;
  const endedLatencies = receiver
    ? receiver.received.filter((r) => JSON.parse(r.body).type === "call.ended")
      .map((r) => r.receivedAt - stoppingAt)
    : [];
  // The record's own end (`timeline.ended`, wall clock) to arrival: the server's share of the above.
  const fromRecordEnd = receiver
    ? receiver.received.map((r) => ({ r, event: JSON.parse(r.body) }))
      .filter(({ event }) => event.type === "call.ended" && event.data?.timeline?.ended)
      .map(({ r, event }) =>
        performance.timeOrigin + r.receivedAt - Date.parse(event.data.timeline.ended)
      )
    : [];
  const webhookRows = receiver
    ? [
      `| webhooks received (call.ended, distinct calls) | ${receiver.received.length} (${endedLatencies.length}, ${
        ended!.size
      } of ${count}) |`,
      `| first caller hangs up → call.ended received p50 / p95 / max | ${
        percentile(endedLatencies, 50)?.toFixed(0)
      } / ${percentile(endedLatencies, 95)?.toFixed(0)} / ${
        percentile(endedLatencies, 100)?.toFixed(0)
      } ms |`,
      `| record timeline.ended → call.ended received p50 / p95 / max | ${
        percentile(fromRecordEnd, 50)?.toFixed(0)
      } / ${percentile(fromRecordEnd, 95)?.toFixed(0)} / ${
        percentile(fromRecordEnd, 100)?.toFixed(0)
      } ms |`,
    ]
    : [];
  await rig[Symbol.asyncDispose]();
  await receiver?.close();
  if (kvDir) await Deno.remove(kvDir, { recursive: true });
  Object.assign(
    options.result ?? {},
    {
      calls: count,
      summaries: summaries.length,
      underruns,
      underrunsAwaitingAudio: awaitingAudio,
      callsWithUnderrun: withUnderrun,
      cpuPerCallMinute: cpuUsed / callMinutes,
      serverCoresBusy: cpuUsed / (activeMs / 1000),
      benchCoresBusy: ownCpu / (activeMs / 1000),
      benchLagP99Ms: benchLag.p99,
      serverUnread: unreadData?.server,
      benchUnread: unreadData?.bench,
      kibPerCall: (peakRss - idleRss) / count / 1024,
    } satisfies LoadResult,
  );
  return [
    `| records, webhooks | ${options.records ?? "memory"}, ${receiver ? "on" : "off"} |`,
    `| concurrent calls | ${count} (ramp ${(rampMs / 1000).toFixed(1)} s, ${
      (activeMs / 1000).toFixed(0)
    } s) |`,
    `| calls that ended cleanly (summary logged) | ${summaries.length} |`,
    `| playback underruns (calls with any) | ${underruns} (${withUnderrun}) |`,
    `| answers given under load | ${turns.length} |`,
    `| reply p50 / p95 under load | ${percentile(replies, 50)?.toFixed(1)} / ${
      percentile(replies, 95)?.toFixed(1)
    } ms |`,
    `| server CPU seconds per call-minute | ${(cpuUsed / callMinutes).toFixed(3)} |`,
    `| server CPU, cores busy | ${(cpuUsed / (activeMs / 1000)).toFixed(2)} |`,
    `| same per call-minute, with the ${(windDownMs / 1000).toFixed(1)} s wind-down | ${
      (cpuWithWindDown / callMinutes).toFixed(3)
    } |`,
    ...webhookRows,
    `| fakes + callers (this process), cores busy | ${(ownCpu / (activeMs / 1000)).toFixed(2)} |`,
    `| fakes + callers event-loop lag p99 / max | ${benchLag.p99.toFixed(0)} / ${
      benchLag.max.toFixed(0)
    } ms |`,
    ...(unreadData
      ? [
        `| unread socket data p50 / max over the run, server | ${
          unreadCell(unreadData.server)
        } KiB |`,
        `| unread socket data p50 / max, fakes + callers | ${unreadCell(unreadData.bench)} KiB |`,
      ]
      : []),
    `| resident memory per call | ${((peakRss - idleRss) / count / 1024).toFixed(0)} KiB (idle ${
      (idleRss / 1048576).toFixed(0)
    } MiB, peak ${(peakRss / 1048576).toFixed(0)} MiB) |`,
  ];
}

/** One capacity search: a server layout and the call counts to try, lowest first. */
interface CapacityPlan {
  /** How the server ran, e.g. "WORKERS=1 on CPU 0". */
  label: string;
  workers: number;
  /** `taskset` CPU lists for the server and for this process; unpinned when undefined. */
  serverCpus?: string;
  benchCpus?: string;
  steps: number[];
  vendors: LoadOptions["vendors"];
  socketQueues: boolean;
}

/** Over how long the callers of a capacity step hang up. */
const CAPACITY_HANGUP_SPREAD_MS = 10_000;

/**
 * Runs the load at each step upward; returns the table rows and the highest step below the first
 * with an underrun (or a call that did not end cleanly). Steps go on past that one, so that CPU
 * and memory are seen at every count.
 */
async function capacitySearch(
  plan: CapacityPlan,
  seconds: number,
): Promise<{ rows: string[]; best?: LoadResult }> {
  if (plan.benchCpus) await pinThreads(Deno.pid, plan.benchCpus);
  const rows: string[] = [];
  let best: LoadResult | undefined;
  let clean = true;
  for (const calls of plan.steps) {
    const result: Partial<LoadResult> = {};
    try {
      await load(calls, seconds, {
        workers: plan.workers,
        pinServerCpus: plan.serverCpus,
        vendors: plan.vendors,
        // Calls end one by one, as they do in production: the same instant for all would make
        // the last frames of every call wait behind the teardown of the others.
        hangupSpreadMs: CAPACITY_HANGUP_SPREAD_MS,
        socketQueues: plan.socketQueues,
        result,
      });
    } catch (error) {
      // E.g. the fake Telnyx, starved of CPU, did not answer `/start` in time: no figures.
      rows.push(`| ${plan.label} | ${calls} | run failed: ${String(error).split("\n")[0]} |`);
      console.error(rows.at(-1));
      break;
    }
    const r = result as LoadResult;
    rows.push(
      `| ${plan.label} | ${calls} | ${r.underruns} (${r.callsWithUnderrun}; ${r.underrunsAwaitingAudio}) | ${r.summaries} | ${
        r.serverCoresBusy.toFixed(2)
      } | ${r.cpuPerCallMinute.toFixed(3)} | ${r.kibPerCall.toFixed(0)} | ${
        r.benchCoresBusy.toFixed(2)
      } | ${r.benchLagP99Ms.toFixed(0)} |${
        r.serverUnread && r.benchUnread
          ? ` ${unreadCell(r.serverUnread)}; ${unreadCell(r.benchUnread)} |`
          : ""
      }`,
    );
    // As it goes, so that a run cut short still shows its rows.
    console.error(rows.at(-1));
    if (r.underruns > 0 || r.summaries < calls) clean = false;
    if (clean) best = r;
  }
  return { rows, best };
}

/**
 * The capacity table: WORKERS=1 pinned to one CPU with the fakes and callers on the other CPUs,
 * then (with `scaling`) one server process per core over every CPU, the fakes and callers
 * competing with it for them, at the same call counts.
 */
async function capacity(
  steps: number[],
  seconds: number,
  scaling: boolean,
  vendors: LoadOptions["vendors"],
  socketQueues: boolean,
): Promise<string[]> {
  const cores = navigator.hardwareConcurrency;
  const notes: string[] = [];
  const split = await serverAndLoadCpus();
  if (!split) {
    notes.push(
      cores > 1
        ? "taskset not found (install util-linux): the server, fakes and callers ran unpinned " +
          "on the same cores, so underruns may be the fakes' as much as the server's."
        : "one CPU: the server cannot be kept apart from the fakes and callers; unpinned.",
    );
  }
  const out = [
    "| server | calls | underruns (calls with any; audio not yet at the playback) | ended cleanly | server cores busy | " +
    "server CPU s per call-minute | KiB per call | fakes + callers cores busy | their lag p99 ms |" +
    (socketQueues ? " unread socket data KiB p50 / max: server; fakes + callers |" : ""),
    "|---|---|---|---|---|---|---|---|---|" + (socketQueues ? "---|" : ""),
  ];
  const summary: string[] = [];
  const one = await capacitySearch({
    label: split ? `WORKERS=1 on CPU ${split.server}` : "WORKERS=1, unpinned",
    workers: 1,
    serverCpus: split?.server,
    benchCpus: split?.load,
    steps,
    vendors,
    socketQueues,
  }, seconds);
  out.push(...one.rows);
  summary.push(perCore("WORKERS=1", one.best, 1, steps));
  if (scaling && cores > 1) {
    const many = await capacitySearch({
      label: `WORKERS=${cores} ${
        split ? `on CPUs ${split.all}` : "unpinned"
      }, shared with the fakes and callers`,
      workers: cores,
      serverCpus: split?.all,
      benchCpus: split?.all,
      steps,
      vendors,
      socketQueues,
    }, seconds);
    out.push(...many.rows);
    summary.push(perCore(`WORKERS=${cores}`, many.best, cores, steps));
    notes.push(
      `WORKERS=${cores} shares its ${cores} CPUs with the fakes and callers (see their cores ` +
        "busy): its calls per core are a lower bound on what those cores carry with the vendors " +
        "elsewhere, and its underruns may be the fakes' lateness as much as the server's.",
    );
  }
  return [...out, "", ...summary, ...notes];
}

function unreadCell(unread: UnreadSummary): string {
  return `${unread.p50KiB.toFixed(0)} / ${unread.maxKiB.toFixed(0)}`;
}

function perCore(label: string, best: LoadResult | undefined, cores: number, steps: number[]) {
  if (!best) return `${label}: underruns already at ${steps[0]} calls.`;
  const capped = best.calls === steps.at(-1) ? " (no underrun at the highest step tried)" : "";
  return `${label}: ${best.calls} calls with no underrun${capped}, ${
    (best.calls / cores).toFixed(0)
  } per server core; ${best.cpuPerCallMinute.toFixed(3)} CPU s per call-minute; ${
    best.kibPerCall.toFixed(0)
  } KiB per call.`;
}

function recordsOption(value: string): "memory" | "file" {
  if (value === "memory" || value === "file") return value;
  throw new Error(`--records ${value}: expected memory or file`);
}

if (import.meta.main) {
  // Parsed here, not at module level, so `bench/profile_server.ts` can import `load`.
  const { values: args } = parseArgs({
    args: Deno.args,
    options: {
      calls: { type: "string", default: "300" },
      seconds: { type: "string", default: "30" },
      "ramp-seconds": { type: "string", default: "" },
      "skip-load": { type: "boolean", default: false },
      "skip-latency": { type: "boolean", default: false },
      records: { type: "string", default: "memory" },
      webhooks: { type: "boolean", default: false },
      "pin-server": { type: "string", default: "" },
      "hangup-spread-seconds": { type: "string", default: "0" },
      capacity: { type: "boolean", default: false },
      steps: { type: "string", default: "100,150,200,250,300" },
      scaling: { type: "boolean", default: false },
      workers: { type: "string", default: "1" },
      "instant-vendors": { type: "boolean", default: false },
      "socket-queues": { type: "boolean", default: false },
    },
  });
  const out: string[] = [];
  if (!args["skip-latency"]) {
    // The voice-to-voice server on one CPU, fakes and callers on the others, as in the capacity
    // search, unless told otherwise; what this process starts afterwards must not inherit that.
    const split = args["pin-server"] ? undefined : await serverAndLoadCpus();
    const serverCpus = args["pin-server"] || split?.server;
    out.push("| measure | n | p50 ms | p95 ms | max ms | target |", "|---|---|---|---|---|---|");
    if (split) await pinThreads(Deno.pid, split.load);
    try {
      out.push(...await voiceToVoice("nova", serverCpus));
      out.push(...await voiceToVoice("flux", serverCpus));
    } finally {
      if (split) await pinThreads(Deno.pid, split.all);
    }
    out.push(...await turnLatency("nova"));
    out.push(...await turnLatency("flux"));
    out.push(...await bargeInLatency());
    out.push(
      "",
      `voice-to-voice: ${
        split
          ? `the server on CPU ${split.server}, this process (fakes and callers) on CPU ${split.load}`
          : serverCpus
          ? `the server on CPU ${serverCpus}, this process where it runs`
          : "unpinned (taskset or a second CPU is missing)"
      }; the other rows: server and fakes in this process`,
    );
  }
  if (!args["skip-load"] && args.capacity) {
    out.push("");
    out.push(
      ...await capacity(
        args.steps.split(",").map(Number),
        Number(args.seconds),
        args.scaling,
        args["instant-vendors"] ? "instant" : "realistic",
        args["socket-queues"],
      ),
    );
  } else if (!args["skip-load"]) {
    out.push("", "| load | |", "|---|---|");
    const calls = Number(args.calls);
    const rampSeconds = Number(args["ramp-seconds"] || 0);
    out.push(
      ...await load(calls, Number(args.seconds), {
        rampBatchMs: rampSeconds > 0 ? (rampSeconds * 1000) / (calls / 10) : undefined,
        records: recordsOption(args.records),
        webhooks: args.webhooks,
        pinServerCpus: args["pin-server"] || undefined,
        hangupSpreadMs: Number(args["hangup-spread-seconds"]) * 1000,
        workers: Number(args.workers),
        vendors: args["instant-vendors"] ? "instant" : "realistic",
        socketQueues: args["socket-queues"],
      }),
    );
  }
  console.log(out.join("\n"));
}
