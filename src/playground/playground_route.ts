/**
 * The browser playground: `GET /playground` is a page that talks to the voice agent through the
 * microphone, over `GET /playground/ws` (a {@link BrowserTransport}), through the same
 * CallSession and VoiceAgent a phone call uses. Only the three AI keys are needed, no Telnyx.
 * The system prompt, greeting, first speaker and custom data come from the page, per call.
 *
 * Access: open from loopback; from elsewhere the page must send API_TOKEN in its first message
 * (a browser WebSocket cannot send headers, and the token never goes in the URL).
 *
 * @module
 */
import { Hono } from "hono";
import type { AppDeps } from "../app.ts";
import { deadline, DeadlineError } from "../async/deadline.ts";
import { missingFor } from "../config.ts";
import { fromLoopback, loopbackOnly } from "../console/page_access.ts";
import { PAGE_HEADERS, pageFiles, SCRIPT_HEADERS } from "../pages/pages.ts";
import { ApiError } from "../http/api_error.ts";
import type { Logger } from "../log.ts";
import type { CallEvent, CallEventSink } from "../records/call_events.ts";
import { timingSafeEqual } from "../security/bearer_token.ts";
import { voiceAgentStarter } from "../session/voice_agent_starter.ts";
import type { TranscriptEvent } from "../services/stt.ts";
import { CallSession } from "../session/call_session.ts";
import {
  BrowserTransport,
  browserTransportEvent,
  parsePageMessage,
  type StartMessage,
  StartMessageSchema,
} from "./browser_transport.ts";

/** Longest the page may take to send its start message after the socket opened. */
const START_TIMEOUT_MS = 10_000;

const loadPage = pageFiles({
  html: new URL("./playground.html", import.meta.url),
  js: new URL("./playground.js", import.meta.url),
  worklet: new URL("./capture_worklet.js", import.meta.url),
});

type PlaygroundDeps = Pick<
  AppDeps,
  "config" | "logger" | "registry" | "events" | "isDraining"
>;

/** The playground page, its scripts and its WebSocket. */
export function playgroundRoute(deps: PlaygroundDeps): Hono {
  const { config } = deps;
  return new Hono()
    .get("/playground", async (c) => c.html((await loadPage()).html, 200, PAGE_HEADERS))
    .get(
      "/playground/playground.js",
      async (c) => c.body((await loadPage()).js, 200, SCRIPT_HEADERS),
    )
    .get(
      "/playground/capture_worklet.js",
      async (c) => c.body((await loadPage()).worklet, 200, SCRIPT_HEADERS),
    )
    .get("/playground/ws", (c) => {
      if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
        throw new ApiError(
          426,
          "upgrade_required",
          "/playground/ws is the playground's WebSocket; open /playground in a browser.",
          {},
          { Upgrade: "websocket" },
        );
      }
      const local = fromLoopback(c);
      if (!local && !config.API_TOKEN) throw loopbackOnly();
      const missing = missingFor(config, "voice_agent");
      if (config.ENV === "production" || missing.length > 0) {
        throw new ApiError(
          503,
          "not_configured",
          config.ENV === "production"
            ? "With ENV=production the conversation runs on Pipecat Cloud: run the playground " +
              "with ENV=local."
            : `The playground needs ${missing.join(", ")} in the environment (see env.example).`,
          { missing },
        );
      }
      if (deps.isDraining()) {
        throw new ApiError(503, "draining", "The server is shutting down; try again shortly.");
      }
      const { socket, response } = Deno.upgradeWebSocket(c.req.raw);
      servePlaygroundSocket(socket, { ...deps, needsToken: !local });
      return response;
    });
}

/** Runs one playground call on an accepted socket. */
function servePlaygroundSocket(
  socket: WebSocket,
  deps: PlaygroundDeps & { needsToken: boolean },
): void {
  socket.binaryType = "arraybuffer";
  const transport = new BrowserTransport(socket);
  const firstMessage = Promise.withResolvers<string>();
  let session: CallSession | undefined;
  let log: Logger = deps.logger;

  const refuse = (code: string, message: string) => {
    log.warn("refusing playground call", { code, reason: message });
    transport.send({ type: "error", code, message });
    transport.close(1008, code);
  };

  socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
    const data = event.data;
    if (!session) {
      // Audio before the call starts is dropped; the first text message starts it.
      if (typeof data === "string") firstMessage.resolve(data);
      return;
    }
    if (typeof data !== "string") {
      session.deliver({ type: "media", payload: new Uint8Array(data) });
      return;
    }
    const parsed = browserTransportEvent(data);
    if (parsed.ok) session.deliver(parsed.event);
    else log.debug("playground message ignored", { reason: parsed.reason });
  };
  socket.onclose = (event) => {
    firstMessage.reject(new Error("closed before start"));
    session?.deliver({ type: "socket_closed", code: event.code, reason: event.reason });
  };

  deadline(firstMessage.promise, START_TIMEOUT_MS, { what: "the playground start message" })
    .then((text) => {
      const start = parsePageMessage(text, StartMessageSchema, "start message");
      if (!start.ok) return refuse("bad_start", start.reason);
      if (
        deps.needsToken &&
        !(deps.config.API_TOKEN &&
          timingSafeEqual(start.message.token ?? "", deps.config.API_TOKEN))
      ) {
        return refuse("unauthorized", "Missing or wrong API token: enter API_TOKEN on the page.");
      }
      const id = `playground-${crypto.randomUUID()}`;
      log = deps.logger.child({ call: id });
      session = startCall(id, start.message, transport, { ...deps, logger: log });
    })
    .catch((error) => {
      if (socket.readyState !== WebSocket.OPEN) return; // the page left before starting
      if (error instanceof DeadlineError) return refuse("no_start", "No start message in time.");
      log.error("playground call failed to start", { error });
      transport.send({ type: "error", code: "internal_error", message: "See the server logs." });
      transport.close(1011, "internal_error");
    });
}

/** Creates the session and its agent, as the media socket does for a phone call. */
function startCall(
  id: string,
  start: StartMessage,
  transport: BrowserTransport,
  deps: PlaygroundDeps,
): CallSession | undefined {
  // The call's record and the page both hear what the session reports.
  const events: CallEventSink = {
    record(callId, event) {
      deps.events.record(callId, event);
      if (callId === id) showOnPage(transport, event);
    },
  };
  const startAgent = voiceAgentStarter(deps.config, undefined, {
    systemPrompt: start.system_prompt,
    greeting: start.greeting,
    firstSpeaker: start.first_speaker,
    onTranscript: (event) => showTranscript(transport, event),
  });
  if (!startAgent) {
    transport.send({ type: "error", code: "not_configured", message: "No voice agent." });
    transport.close(1011, "not_configured");
    return undefined;
  }
  const session = new CallSession(
    { streamId: id, callControlId: id, body: start.custom_data },
    {
      transport,
      // No phone line to hang up: the session ends the call by closing the socket.
      hangupCall: () => Promise.resolve("hung_up"),
      logger: deps.logger,
      events,
    },
  );
  const refused = deps.registry.add(session);
  if (refused) {
    transport.close(1008, refused);
    return undefined;
  }
  events.record(id, {
    type: "placed",
    at: Date.now(),
    to: "playground",
    from: "browser",
    body: start.custom_data,
    remoteConversation: false,
  });
  startAgent(session);
  session.start();
  transport.send({
    type: "started",
    call_id: id,
    input: {
      encoding: transport.inputFormat.encoding,
      sample_rate: transport.inputFormat.sampleRate,
    },
    output: {
      encoding: transport.outputFormat.encoding,
      sample_rate: transport.outputFormat.sampleRate,
    },
  });
  return session;
}

function showOnPage(transport: BrowserTransport, event: CallEvent): void {
  if (event.type === "turn") {
    transport.send({
      type: "turn",
      role: event.role,
      text: event.text,
      interrupted: event.interrupted === true,
      latency: event.latency ? { ...event.latency } as Record<string, number> : null,
    });
  } else if (event.type === "ended") {
    transport.send({ type: "ended", reason: event.reason });
  }
}

function showTranscript(transport: BrowserTransport, event: TranscriptEvent): void {
  switch (event.type) {
    case "interim":
    case "eager_end_of_turn":
      transport.send({ type: "transcript", text: event.text, final: false });
      break;
    case "final":
    case "end_of_turn":
      transport.send({ type: "transcript", text: event.text, final: true });
      break;
  }
}
