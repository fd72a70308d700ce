/**
 * Binds one Telnyx media WebSocket to a {@link CallSession}: parses frames, creates the session
 * on `start`, and forwards the rest to its mailbox.
 *
 * Nothing a peer sends can throw out of here: a malformed, binary or unexpected frame is logged
 * (rate-limited, so a flood cannot flood the logs) and dropped, and the call goes on.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { CustomData } from "../telnyx/body_param.ts";
import {
  decodeMediaPayload,
  type InboundFrame,
  isTelephonyEncoding,
  mediaPayloadBytes,
  parseInboundFrame,
} from "../telnyx/media_stream.ts";
import { CallSession, type HangupCall, type MediaChannel } from "./call_session.ts";
import type { CallRegistry } from "./call_registry.ts";
import { InboundAudioPacer } from "./inbound_audio_pacer.ts";

/** What a media socket needs from the server. */
export interface MediaSocketDeps {
  /** Custom data from the verified `body` parameter of the socket URL. */
  body: CustomData;
  logger: Logger;
  registry: CallRegistry;
  hangupCall: HangupCall;
  /** Called with each session once it is created (the conversation attaches here). */
  onSession?: (session: CallSession) => void;
}

/** Log the first few problems of a kind, then one in every hundred. */
function shouldLog(count: number): boolean {
  return count <= 5 || count % 100 === 0;
}

/** Serves one accepted media WebSocket until it closes. */
export function serveMediaSocket(socket: WebSocket, deps: MediaSocketDeps): void {
  let session: CallSession | undefined;
  let log = deps.logger;
  const dropped = { malformed: 0, binary: 0, early: 0 };
  const pacer = new InboundAudioPacer();

  const channel: MediaChannel = {
    send(frame) {
      if (socket.readyState === WebSocket.OPEN) socket.send(frame);
    },
    close(code, reason) {
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
        socket.close(code, reason);
      }
    },
  };

  const drop = (kind: keyof typeof dropped, msg: string, fields?: Record<string, unknown>) => {
    dropped[kind]++;
    if (shouldLog(dropped[kind])) log.warn(msg, { ...fields, dropped: dropped[kind] });
  };

  const onStart = (frame: Extract<InboundFrame, { event: "start" }>) => {
    if (session) return drop("malformed", "second start frame ignored");
    const { start, stream_id: streamId } = frame;
    const callControlId = start.call_control_id ?? "";
    log = log.child({ call: callControlId || undefined, stream: streamId });
    const format = start.media_format;
    if (!isTelephonyEncoding(format.encoding)) {
      // Only G.711 is handled; the TeXML we serve asks for PCMU, so this is a misconfiguration.
      log.error("unsupported media encoding; ending the call", { encoding: format.encoding });
      channel.close(1003, "unsupported media encoding");
      if (callControlId) void deps.hangupCall(callControlId).catch(() => {});
      return;
    }
    if (!callControlId) log.warn("start frame has no call_control_id; hang-up will not work");
    session = new CallSession(
      {
        streamId,
        callControlId,
        mediaFormat: {
          encoding: format.encoding,
          sampleRate: format.sample_rate,
          channels: format.channels ?? 1,
        },
        from: start.from,
        to: start.to,
        body: deps.body,
      },
      { channel, hangupCall: deps.hangupCall, logger: deps.logger },
    );
    deps.registry.add(session);
    deps.onSession?.(session);
    session.start();
  };

  const onFrame = (frame: InboundFrame) => {
    if (frame.event === "connected") return log.debug("media stream connected");
    if (frame.event === "start") return onStart(frame);
    if (!session) return drop("early", `${frame.event} before start ignored`);
    switch (frame.event) {
      case "media": {
        // Paced before decoding, so audio sent faster than real time costs nothing more.
        const bytes = mediaPayloadBytes(frame.media.payload);
        if (!pacer.admit(bytes)) {
          const { stats } = session;
          stats.mediaFramesDropped++;
          stats.mediaBytesDropped += bytes;
          if (shouldLog(stats.mediaFramesDropped)) {
            log.warn("inbound audio ahead of real time dropped", {
              dropped_frames: stats.mediaFramesDropped,
              dropped_bytes: stats.mediaBytesDropped,
            });
          }
          return;
        }
        session.deliver({ type: "media", payload: decodeMediaPayload(frame.media.payload) });
        return;
      }
      case "dtmf":
        session.deliver({ type: "dtmf", digit: frame.dtmf.digit });
        return;
      case "mark":
        session.deliver({ type: "mark", name: frame.mark.name });
        return;
      case "stop":
        session.deliver({ type: "stop" });
        return;
      case "error":
        session.deliver({
          type: "stream_error",
          code: frame.error?.code,
          title: frame.error?.title,
        });
        return;
    }
  };

  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") {
      return drop("binary", "binary frame ignored (Telnyx sends JSON text)");
    }
    const parsed = parseInboundFrame(event.data);
    if (!parsed.ok) return drop("malformed", "malformed frame ignored", { reason: parsed.reason });
    try {
      onFrame(parsed.frame);
    } catch (error) {
      log.error("frame handling failed", { error, event: parsed.frame.event });
    }
  });
  socket.addEventListener("close", (event) => {
    log.debug("media socket closed", { code: event.code });
    session?.deliver({ type: "socket_closed", code: event.code, reason: event.reason });
  });
  socket.addEventListener("error", (event) => {
    log.warn("media socket error", {
      error: event instanceof ErrorEvent ? event.message : "unknown",
    });
  });
}
