/**
 * What starts a voice agent on each new call: the vendor adapters (Deepgram, OpenAI, Cartesia)
 * built from the configuration, in the call's audio format, around the call's session. Phone
 * calls and the browser playground start their agents through it alike.
 *
 * @module
 */
import { createVad } from "../audio/vad.ts";
import type { Config } from "../config.ts";
import { createChatStreamer, createLlmWarmer, LlmError } from "../services/llm.ts";
import {
  type LiveTranscriber,
  openLiveTranscriber,
  type TranscriptEvent,
} from "../services/stt.ts";
import { CartesiaSpeaker } from "../services/tts.ts";
import type { CallSession } from "./call_session.ts";
import { VoiceAgent } from "./voice_agent.ts";

/** Per-call changes to the configured agent (the browser playground tries prompts out). */
export interface AgentOverrides {
  systemPrompt?: string;
  greeting?: string;
  firstSpeaker?: "callee" | "bot";
  /** Sees every transcript event the agent gets, e.g. to show interim words. */
  onTranscript?: (event: TranscriptEvent) => void;
}

/**
 * One warmer per OpenAI key, base URL and model in the process, so its interval holds across
 * every starter (the server's, and one per playground session).
 */
const llmWarmers = new Map<string, ReturnType<typeof createLlmWarmer>>();

function llmWarmerFor(apiKey: string, baseURL: string | undefined, model: string) {
  const key = JSON.stringify([apiKey, baseURL, model]);
  let warmer = llmWarmers.get(key);
  if (!warmer) llmWarmers.set(key, warmer = createLlmWarmer({ apiKey, baseURL, model }));
  return warmer;
}

/**
 * Starts a voice agent on each new call (local mode with the AI keys set). Any failure to start
 * ends that call, never the process.
 */
export function voiceAgentStarter(
  config: Config,
  onAgent?: (agent: VoiceAgent) => void,
  overrides: AgentOverrides = {},
): ((session: CallSession) => void) | undefined {
  const { OPENAI_API_KEY, DEEPGRAM_API_KEY, CARTESIA_API_KEY } = config;
  if (config.ENV === "production" || !OPENAI_API_KEY || !DEEPGRAM_API_KEY || !CARTESIA_API_KEY) {
    return undefined;
  }
  // One HTTP client for all calls: the LLM is stateless per request.
  const llm = createChatStreamer({
    apiKey: OPENAI_API_KEY,
    baseURL: config.OPENAI_BASE_URL,
    model: config.OPENAI_MODEL,
    timeoutMs: config.LLM_TIMEOUT_MS,
  });
  const warmLlm = llmWarmerFor(OPENAI_API_KEY, config.OPENAI_BASE_URL, config.OPENAI_MODEL);
  return (session) => {
    const log = session.log;
    const start = async () => {
      const vad = await createVad();
      const agent = new VoiceAgent(session, {
        llm,
        warmLlm: async (signal) => {
          const warmup = await warmLlm(signal);
          if (!(warmup instanceof LlmError) || signal.aborted) return;
          // A key or model OpenAI refuses fails every answer: say so before the first one. Any
          // other refusal may not (a key not allowed to read models, a compatible server
          // without the lookup), so it is only a debug line.
          if (warmup.code === "invalid_api_key" || warmup.code === "model_not_found") {
            log.warn(
              "OpenAI refused the model lookup at the call's start; answers will fail " +
                "the same way: check OPENAI_API_KEY and OPENAI_MODEL",
              { error: warmup },
            );
          } else log.debug("OpenAI model lookup at the call's start failed", { error: warmup });
        },
        speaker: new CartesiaSpeaker({
          apiKey: CARTESIA_API_KEY,
          baseURL: config.CARTESIA_BASE_URL,
          model: config.CARTESIA_MODEL,
          voiceId: config.CARTESIA_VOICE_ID,
          audioFormat: session.outputFormat,
          log: (level, msg, fields) => log[level](`tts: ${msg}`, fields),
        }),
        openTranscriber: (signal) =>
          observed(
            openLiveTranscriber({
              apiKey: DEEPGRAM_API_KEY,
              baseUrl: config.DEEPGRAM_BASE_URL,
              engine: config.STT_ENGINE,
              audioFormat: session.inputFormat,
              model: config.DEEPGRAM_MODEL,
              eagerEotThreshold: config.FLUX_EAGER_EOT_THRESHOLD,
              signal,
              log: (level, msg, fields) => log[level](`stt: ${msg}`, fields),
            }),
            overrides.onTranscript,
          ),
        vad,
        sttEngine: config.STT_ENGINE,
        systemPrompt: overrides.systemPrompt ?? config.SYSTEM_PROMPT,
        greeting: overrides.greeting ?? config.GREETING,
        firstSpeaker: overrides.firstSpeaker ?? config.FIRST_SPEAKER,
        maxCallSeconds: config.MAX_CALL_SECONDS,
        idleTimeoutSeconds: config.IDLE_TIMEOUT_SECONDS,
        voicemailMessage: config.VOICEMAIL_MESSAGE,
        voicemailWaitSeconds: config.VOICEMAIL_WAIT_SECONDS,
      });
      onAgent?.(agent);
      agent.start();
    };
    start().catch((error) => {
      log.error("voice agent failed to start; ending the call", { error });
      void session.hangUp("error");
    });
  };
}

/** `stt` whose events also go to `observe`, when given. */
function observed(
  stt: LiveTranscriber,
  observe: ((event: TranscriptEvent) => void) | undefined,
): LiveTranscriber {
  if (!observe) return stt;
  return {
    sendAudio: (audio) => stt.sendAudio(audio),
    finalize: () => stt.finalize(),
    forgetSilence: (keepMs) => stt.forgetSilence(keepMs),
    close: () => stt.close(),
    get audioSeconds() {
      return stt.audioSeconds;
    },
    async *[Symbol.asyncIterator]() {
      for await (const event of stt) {
        observe(event);
        yield event;
      }
    },
  };
}
