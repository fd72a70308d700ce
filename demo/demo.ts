/**
 * `deno task demo`: one outbound call from start to hang-up with no accounts and no keys. The
 * service runs for real (`/start`, signed URLs, TeXML, the media socket, CallSession, the voice
 * agent with its VAD, turn detection, barge-in and playback, call records); Telnyx, Deepgram,
 * OpenAI and Cartesia are the loopback stand-ins the test suite uses, and the callee is a
 * recorded voice whose words the stand-in STT knows in advance.
 *
 * @module
 */
import { deadline } from "../src/async/deadline.ts";
import type { CallEvent, TurnLatency } from "../src/records/call_events.ts";
import type { CallRecordView } from "../src/records/call_record.ts";
import { CallerTimeline } from "../tests/helpers/caller_timeline.ts";
import { startVoiceHarness } from "../tests/helpers/voice_harness.ts";

/**
 * The bot's first answer: long enough that the callee's interruption lands in its middle, however
 * fast the reply starts.
 */
const LONG_ANSWER = "It is about your premium account, Zoë. We have added several features " +
  "this month: a new mobile app, support on weekends, and a loyalty programme with rewards " +
  "you can start using today. There is also a new family plan, and a discount for paying " +
  "once a year instead of every month, which many of our customers have asked us about.";
const AFTER_BARGE_IN = "Of course, what is your question?";
const GOODBYE = "Thank you for your time, Zoë. Goodbye!";

/** The callee: picks up, asks, cuts into the bot's long answer, and says goodbye. */
function callee(): CallerTimeline {
  return CallerTimeline.answeredWithHello(2500)
    .say("yes_zoe", "Yes, this is Zoë. What is this about?")
    .pause(1000)
    .say("barge_in", "Wait, stop, I have a question.")
    .pause(4000)
    .say("goodbye", "Thank you, goodbye.")
    .pause(8000);
}

/** Hang guard: the scripted call lasts well under this. */
const CALL_WITHIN_MS = 60_000;
/** How often the printer looks for new call events. */
const PRINT_EVERY_MS = 50;

const LATENCY_LABELS: [keyof TurnLatency, string][] = [
  ["sttFinalizationMs", "STT final"],
  ["llmTtftMs", "LLM first token"],
  ["ttsTtfbMs", "TTS first audio"],
  ["voiceToVoiceMs", "voice to voice"],
];

/** One line per call event worth showing, `null` for the others. */
export function describe(event: CallEvent): string | null {
  switch (event.type) {
    case "placed":
      return `POST /start: Telnyx is asked to call ${event.to}`;
    case "streaming":
      return "answered: Telnyx fetched our TeXML and opened the media WebSocket";
    case "turn": {
      const who = event.role === "user" ? "callee" : "bot   ";
      const cut = event.interrupted ? "  [barge-in: the callee cut in here]" : "";
      const latency = event.latency
        ? "\n" + " ".repeat(18) + LATENCY_LABELS
          .filter(([key]) => event.latency![key] !== undefined)
          .map(([key, label]) => `${label} ${Math.round(event.latency![key]!)} ms`)
          .join(" · ")
        : "";
      return `${who}: ${event.text}${cut}${latency}`;
    }
    case "tool_call":
      return `bot calls ${event.name}(${event.arguments})`;
    case "dtmf":
      return `keys pressed: ${event.digits}`;
    case "error":
      return `error from ${event.source}: ${event.message}`;
    case "ended":
      return `call ended: ${event.reason}`;
    default:
      return null;
  }
}

/** What the demo printed and the call's record. */
export interface DemoResult {
  lines: string[];
  record: CallRecordView;
}

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Where each line goes as it happens; default `console.log`. */
  print?: (line: string) => void;
  /** Awaited after the call with the server's URL, before everything stops (`--keep`). */
  beforeStop?: (serverUrl: string) => Promise<void>;
}

/** Runs the simulated call, printing each event as it happens. */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const print = options.print ?? console.log;
  const lines: string[] = [];
  const out = (line: string) => {
    lines.push(line);
    print(line);
  };
  await using v = await startVoiceHarness({
    caller: callee(),
    replies: [
      // Streamed slowly enough that the bot is still talking when the callee cuts in.
      { kind: "text", text: LONG_ANSWER, deltaDelayMs: 25 },
      { kind: "text", text: AFTER_BARGE_IN },
      {
        kind: "tool_call",
        name: "end_call",
        text: GOODBYE,
        arguments: '{"reason":"callee said goodbye"}',
      },
    ],
  });
  v.cartesia.chunkDelayMs = 60;

  const events = v.h.events.recorded;
  const t0 = Date.now();
  let shown = 0;
  const printNew = () => {
    for (; shown < events.length; shown++) {
      const text = describe(events[shown].event);
      if (text === null) continue;
      const seconds = ((events[shown].event.at - t0) / 1000).toFixed(2).padStart(6);
      out(`${seconds} s   ${text}`);
    }
  };
  const printer = setInterval(printNew, PRINT_EVERY_MS);
  try {
    const { session, callSid } = await v.call({ name: "Zoë", account: { tier: "premium" } });
    await deadline(session.ended, CALL_WITHIN_MS, { what: "the demo call to end" });
    await v.h.server.records!.flush();
    printNew();
    const res = await fetch(`${v.h.server.url}/calls/${encodeURIComponent(callSid)}`);
    const record: CallRecordView = await res.json();
    out("");
    out(
      `Record (GET /calls/${callSid}): ${record.transcript?.length ?? 0} turns, end_reason ` +
        `${record.end_reason}, ${record.duration_seconds} s, usage ${JSON.stringify(record.usage)}`,
    );
    await options.beforeStop?.(v.h.server.url);
    return { lines, record };
  } finally {
    clearInterval(printer);
  }
}

if (import.meta.main) {
  console.log(
    "telnyx-outbound demo: one outbound call, start to hang-up, on this machine only.\n" +
      "Real: this service (/start, signed URLs, TeXML, media socket, CallSession, voice agent,\n" +
      "  VAD, turn detection, barge-in, playback, call record).\n" +
      "Simulated: Telnyx (REST API and media stream), Deepgram (knows the callee's words in\n" +
      "  advance), OpenAI (scripted replies), Cartesia (a tone, not a voice); the callee is\n" +
      "  espeak-ng speech from tests/fixtures played in real time. The stand-ins answer at once,\n" +
      "  so the latencies below are this service's own share plus turn detection.\n",
  );
  const keep = Deno.args.includes("--keep");
  await runDemo({
    beforeStop: keep
      ? async (url) => {
        console.log(`\nThe server stays up: open ${url}/console to see the call. Ctrl+C stops.`);
        const stop = Promise.withResolvers<void>();
        Deno.addSignalListener("SIGINT", () => stop.resolve());
        await stop.promise;
      }
      : undefined,
  });
  if (!keep) console.log("\n(`deno task demo --keep` leaves the server up to look at /console.)");
}
