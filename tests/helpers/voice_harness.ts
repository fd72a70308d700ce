/**
 * Whole simulated calls: the server with its real voice agent, and the real SDKs talking to
 * loopback fakes of all four vendors.
 *
 * @module
 */
import type { CallSession } from "../../src/session/call_session.ts";
import type { VoiceAgent } from "../../src/session/voice_agent.ts";
import { CartesiaFake } from "../fakes/cartesia.ts";
import {
  type DropFault,
  type FakeDeepgram,
  type SpeechSegment,
  startFakeDeepgram,
} from "../fakes/deepgram.ts";
import { type FakeOpenAi, type OpenAiReply, startFakeOpenAi } from "../fakes/openai.ts";
import { TelnyxMediaClient } from "../fakes/telnyx_media.ts";
import { placeAndAnswer } from "./call_driver.ts";
import { CallerTimeline } from "./caller_timeline.ts";
import { type Harness, startHarness, waitFor } from "./harness.ts";
import type { RecordsKv } from "../../src/records/call_store.ts";
import { decodeMuLaw, encodeALaw } from "../../src/audio/g711.ts";

const OPENAI_KEY = "sk-test-openai-key-000";
const DEEPGRAM_KEY = "dg-test-key-0000000";
const CARTESIA_KEY = "sk_car_test_key_0000";

/** Options for {@link startVoiceHarness}. */
export interface VoiceHarnessOptions {
  env?: Record<string, string>;
  /** The callee; its segments script the fake STT. */
  caller: CallerTimeline;
  /** LLM replies in order; after them `whenQueueEmpty` (default: a short text answer). */
  replies?: OpenAiReply[];
  whenQueueEmpty?: (body: Record<string, unknown>) => OpenAiReply;
  deepgramDrops?: DropFault[];
  /** What the fake STT hears instead of the caller's segments (audio in another format). */
  deepgramScript?: SpeechSegment[];
  /** KV for call records (default: KV_PATH, which the harness sets to `:memory:`). */
  kv?: RecordsKv;
  /**
   * The codec the fake Telnyx announces; default PCMU. With PCMA the caller's (mu-law) audio is
   * sent A-law encoded, as a PCMA leg carries it.
   */
  encoding?: "PCMU" | "PCMA";
  /** The vendors' delays (default: the fakes answer at once). */
  pace?: VendorPace;
}

/** How slowly the fake vendors answer. */
export interface VendorPace {
  /** Deepgram's final transcript (Flux: end of turn), ms after the callee stopped. */
  sttFinalMs: number;
  llm: { firstTokenMs: number; tokenIntervalMs: number };
  tts: { firstAudioMs: number; realTimeFactor: number };
}

/**
 * Delays measured on the real vendors: Deepgram's final transcript 300 ms after the callee
 * stops, OpenAI's first token after 350 ms then one every 20 ms, Cartesia's first audio after
 * 120 ms then synthesis at five times real time. Their sum is the least any server can take
 * from the end of the callee's voice to the first word of the answer.
 */
export const REALISTIC_PACE: VendorPace = {
  sttFinalMs: 300,
  llm: { firstTokenMs: 350, tokenIntervalMs: 20 },
  tts: { firstAudioMs: 120, realTimeFactor: 5 },
};

/** End of the callee's voice → first answer audio at {@link REALISTIC_PACE}, vendors only. */
export const REALISTIC_FLOOR_MS = REALISTIC_PACE.sttFinalMs + REALISTIC_PACE.llm.firstTokenMs +
  REALISTIC_PACE.tts.firstAudioMs;

/** A server with all fakes, ready for {@link VoiceHarness.call}. */
export interface VoiceHarness extends AsyncDisposable {
  h: Harness;
  openai: FakeOpenAi;
  deepgram: FakeDeepgram;
  cartesia: CartesiaFake;
  /** Places a call with `body`, answers it and starts the callee's audio. */
  call(body?: Record<string, unknown>): Promise<{
    client: TelnyxMediaClient;
    session: CallSession;
    agent: VoiceAgent;
    callSid: string;
  }>;
}

/** Starts the fakes and a server whose sessions run the real voice agent. */
export async function startVoiceHarness(options: VoiceHarnessOptions): Promise<VoiceHarness> {
  const openai = startFakeOpenAi({
    apiKey: OPENAI_KEY,
    whenQueueEmpty: options.whenQueueEmpty ??
      (() => ({ kind: "text", text: "Sure, happy to help." })),
    pace: options.pace?.llm,
  });
  if (options.replies) openai.enqueue(...options.replies);
  const deepgram = startFakeDeepgram({
    apiKey: DEEPGRAM_KEY,
    script: options.deepgramScript ?? options.caller.segments,
    drops: options.deepgramDrops,
    finalDelayMs: options.pace?.sttFinalMs,
  });
  const cartesia = await CartesiaFake.start({ apiKey: CARTESIA_KEY, pace: options.pace?.tts });
  const h = await startHarness({
    OPENAI_API_KEY: OPENAI_KEY,
    OPENAI_BASE_URL: openai.baseURL,
    DEEPGRAM_API_KEY: DEEPGRAM_KEY,
    DEEPGRAM_BASE_URL: deepgram.url,
    CARTESIA_API_KEY: CARTESIA_KEY,
    CARTESIA_BASE_URL: cartesia.baseURL,
    ...options.env,
  }, { withAgent: true, kv: options.kv });
  return {
    h,
    openai,
    deepgram,
    cartesia,
    async call(body = { name: "Zoë", account: { tier: "premium" } }) {
      const { callSid, streamUrl } = await placeAndAnswer(h, body);
      const client = await TelnyxMediaClient.connect(streamUrl, { callControlId: callSid });
      const index = h.sessions.length;
      const encoding = options.encoding ?? "PCMU";
      client.start(encoding);
      await waitFor(() => h.agents.length > index, "voice agent");
      const audio = options.caller.audio();
      client.streamAudio(encoding === "PCMA" ? encodeALaw(decodeMuLaw(audio)) : audio);
      return { client, session: h.sessions[index], agent: h.agents[index], callSid };
    },
    async [Symbol.asyncDispose]() {
      await h.close();
      await Promise.all([openai.close(), deepgram.close(), cartesia.close()]);
    },
  };
}

/** The bot's first answer in {@link startBargeInHarness}: long enough to be talked over. */
export const LONG_ANSWER = "Well, there is quite a lot to say about that. " +
  "First of all, your account has several features you may not know about. " +
  "Second, we have a new offer this month that could save you money. " +
  "Third, there is our new mobile app, which makes everything a little easier. " +
  "Fourth, our support line is now open on weekends as well. " +
  "And finally, I would love to tell you about our loyalty programme and its rewards.";

/**
 * A callee who says hello, asks, and cuts into the bot's long answer ("Wait, stop, I have a
 * question."), against fakes slower than real time so both streams still run at the barge-in.
 */
export async function startBargeInHarness(): Promise<VoiceHarness> {
  const caller = CallerTimeline.answeredWithHello(2500)
    .say("yes_zoe", "Yes, this is Zoë. What is this about?")
    .pause(1000)
    .say("barge_in", "Wait, stop, I have a question.")
    .pause(4000);
  const v = await startVoiceHarness({
    caller,
    replies: [
      { kind: "text", text: LONG_ANSWER, deltaDelayMs: 25 },
      { kind: "text", text: "Of course, what is your question?" },
    ],
  });
  v.cartesia.chunkDelayMs = 60;
  return v;
}

/** A callee who says hello and then goodbye; the bot answers the goodbye with `end_call`. */
export function startGoodbyeHarness(): Promise<VoiceHarness> {
  const caller = CallerTimeline.answeredWithHello(2500)
    .say("goodbye", "Thank you, goodbye.")
    .pause(6000);
  return startVoiceHarness({
    caller,
    replies: [{
      kind: "tool_call",
      name: "end_call",
      text: "Thank you for your time, Zoë. Goodbye!",
      arguments: '{"reason":"callee said goodbye"}',
    }],
  });
}
