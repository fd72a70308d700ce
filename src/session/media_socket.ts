/**
 * Binds one Telnyx media WebSocket to a {@link CallSession}: parses frames, creates the session
 * on `start`, and forwards the rest to its mailbox.
 *
 * The socket's signed URL names the call it is for. A `start` for any other call, or for a call
 * that already has a live stream, is refused with 1008 and hangs up nothing: a socket can only
 * ever speak for its own call. A socket that sends no valid `start` in time is closed too; until
 * it is a call, or its close completes, it counts against the caps on pending sockets.
 *
 * Nothing a peer sends can throw out of here: a malformed, binary or unexpected frame is logged
 * (rate-limited, so a flood cannot flood the logs) and dropped, and the call goes on.
 *
 * @module
 */
import { deadline, DeadlineError, IdleTimeout, settledWithin } from "../async/deadline.ts";
import type { Logger } from "../log.ts";
import type { CustomData } from "../telnyx/body_param.ts";
import {
  type InboundFrame,
  MAX_INBOUND_MEDIA_BYTES,
  mediaPayloadBytes,
  parseInboundFrame,
  peekMediaPayload,
} from "../telnyx/media_stream.ts";
import {
  TelnyxMediaTransport,
  telnyxStreamFormat,
  telnyxTransportEvent,
} from "../transport/telnyx_media_transport.ts";
import { CallSession, type HangupCall } from "./call_session.ts";
import type { CallRegistry, PendingSocket } from "./call_registry.ts";
import type { CallEventSink } from "../records/call_events.ts";
import { InboundAudioPacer } from "./inbound_audio_pacer.ts";

/** What a media socket needs from the server. */
export interface MediaSocketDeps {
  /** Custom data from the verified `body` parameter of the socket URL. */
  body: CustomData;
  /** The call the verified socket URL is bound to; `start` must name this call. */
  callControlId: string;
  /** Address of the peer, for the per-client count of sockets waiting for `start`. */
  client: string;
  /** A socket that has not sent a valid `start` by then is closed with 1008. */
  startTimeoutMs: number;
  /** A started call whose socket sends nothing for this long is over: its stream is dead. */
  idleTimeoutMs: number;
  /** How long a socket we refuse gets to answer our close frame before its slot is freed. */
  closeHandshakeMs: number;
  logger: Logger;
  registry: CallRegistry;
  hangupCall: HangupCall;
  /** Called with each session once it is created (the conversation attaches here). */
  onSession?: (session: CallSession) => void;
  /** Where each session feeds its call record. */
  events?: CallEventSink;
}

/** Log the first few problems of a kind, then one in every hundred. */
function shouldLog(count: number): boolean {
  return count <= 5 || count % 100 === 0;
}

/**
 * Closes a socket whose URL was refused with 1008 and `reason` once it opens, counting it as
 * pending until the close completes (or its bound passes), so refused sockets are capped like
 * silent ones.
 */
export function refuseMediaSocket(
  socket: WebSocket,
  reason: string,
  deps: Pick<MediaSocketDeps, "registry" | "client" | "logger" | "closeHandshakeMs">,
): void {
  const pending = deps.registry.holdPending(deps.client, (code, why) => socket.close(code, why));
  // 1008 "policy violation": the peer learns why, and Telnyx logs it on its side.
  closeNeverStarted(socket, 1008, reason, pending, deps);
}

/**
 * Closes a socket that never became a call and frees its pending slot when the close completes,
 * or after `closeHandshakeMs` when the peer ignores our close frame: Deno keeps such a
 * connection open until the peer leaves, but it must not hold a slot new calls need.
 */
function closeNeverStarted(
  socket: WebSocket,
  code: number,
  reason: string,
  pending: PendingSocket,
  deps: Pick<MediaSocketDeps, "logger" | "closeHandshakeMs">,
): void {
  const closed = new Promise<void>((resolve) => {
    socket.addEventListener("close", () => resolve(), { once: true });
  });
  if (socket.readyState === WebSocket.CONNECTING) {
    socket.addEventListener("open", () => socket.close(code, reason), { once: true });
  } else if (socket.readyState === WebSocket.OPEN) {
    socket.close(code, reason);
  }
  const boundMs = deps.closeHandshakeMs;
  void settledWithin(closed, boundMs).then((inTime) => {
    if (!inTime) {
      deps.logger.warn("media socket peer ignored our close frame; freeing its pending slot", {
        timeout_ms: boundMs,
      });
    }
    pending.release();
  });
}

/** Serves one accepted media WebSocket until it closes. */
export function serveMediaSocket(socket: WebSocket, deps: MediaSocketDeps): void {
  let session: CallSession | undefined;
  /** Set once the socket is being closed by us before it became a call; frames are ignored. */
  let refused = false;
  let log = deps.logger.child({ call: deps.callControlId });
  const dropped = { malformed: 0, binary: 0, early: 0 };
  const pacer = new InboundAudioPacer();
  /**
   * Every inbound payload is decoded into this one buffer: a media event's payload is only lent
   * to the session (which copies what it keeps), so 50 frames a second allocate nothing.
   */
  const inboundAudio = new Uint8Array(MAX_INBOUND_MEDIA_BYTES);

  const drop = (kind: keyof typeof dropped, msg: string, fields?: Record<string, unknown>) => {
    dropped[kind]++;
    if (shouldLog(dropped[kind])) log.warn(msg, { ...fields, dropped: dropped[kind] });
  };

  /** Closes a socket that never became a call; nothing is hung up. */
  function refuse(code: number, reason: string) {
    if (refused) return;
    refused = true;
    waitingForStart.abort();
    closeNeverStarted(socket, code, reason, pending, { ...deps, logger: log });
  }

  // Until a session takes over, the socket holds a pending slot and a start deadline.
  const pending = deps.registry.holdPending(deps.client, refuse);
  const started = Promise.withResolvers<void>();
  const waitingForStart = new AbortController();
  deadline(started.promise, deps.startTimeoutMs, { signal: waitingForStart.signal, what: "start" })
    .catch((error) => {
      if (!(error instanceof DeadlineError)) return; // refused or closed first
      log.warn("media socket sent no start frame in time; closing it", {
        timeout_ms: deps.startTimeoutMs,
      });
      refuse(1008, `no start frame within ${deps.startTimeoutMs} ms`);
    });

  // The peer may be gone without a close (a network cut): the call is then ended as if the
  // socket had closed, which hangs it up through the API. Deno's ping-based idle timeout is off
  // for this socket (see the media route), so its connection is left to the kernel to drop.
  const silence = new IdleTimeout(deps.idleTimeoutMs, () => {
    log.warn("no frame from Telnyx for too long; ending the call", {
      timeout_ms: deps.idleTimeoutMs,
    });
    const reason = `no frame within ${deps.idleTimeoutMs} ms`;
    session?.deliver({ type: "socket_closed", code: 1006, reason });
    socket.close(1011, reason);
  });

  const onStart = (frame: Extract<InboundFrame, { event: "start" }>) => {
    if (session) return drop("malformed", "second start frame ignored");
    const { start, stream_id: streamId } = frame;
    const callControlId = start.call_control_id ?? "";
    if (callControlId !== deps.callControlId) {
      // The URL was minted for one call; a start naming another is someone trying to take
      // over (or hang up) a call that is not theirs.
      log.warn("start frame names another call than its stream URL; refusing the socket", {
        claimed_call: callControlId.slice(0, 128),
      });
      return refuse(1008, "start frame does not match the stream URL's call");
    }
    log = log.child({ stream: streamId });
    const format = telnyxStreamFormat(start.media_format);
    if (!format.ok) {
      // Only 8 kHz G.711 is handled; the TeXML we serve asks for it, so this is a
      // misconfiguration. Refused whole rather than transcribed or played in the wrong codec.
      log.error("unsupported media format; ending the call", {
        reason: format.reason,
        encoding: start.media_format.encoding,
        sample_rate: start.media_format.sample_rate,
      });
      refuse(1003, format.reason);
      void deps.hangupCall(callControlId).catch(() => {});
      return;
    }
    const candidate = new CallSession(
      { streamId, callControlId, from: start.from, to: start.to, body: deps.body },
      {
        transport: new TelnyxMediaTransport(socket, format.format),
        hangupCall: deps.hangupCall,
        logger: deps.logger,
        events: deps.events,
      },
    );
    const duplicate = deps.registry.add(candidate);
    if (duplicate) {
      log.warn("refusing a second media stream for a live call", { reason: duplicate });
      return refuse(1008, duplicate);
    }
    session = candidate;
    silence.restart();
    void candidate.ended.then(() => silence.stop());
    pending.release();
    started.resolve();
    deps.onSession?.(session);
    session.start();
    const answeredBy = deps.registry.takeAnsweredBy(callControlId);
    if (answeredBy) session.deliver({ type: "answered_by", answeredBy });
  };

  /** Paces and delivers one frame's audio (`now`: when it arrived); false if it does not decode. */
  const onMedia = (session: CallSession, payload: string, now: number): boolean => {
    // Paced before decoding, so audio sent faster than real time costs nothing more.
    const bytes = mediaPayloadBytes(payload);
    if (!pacer.admit(bytes, now)) {
      const { stats } = session;
      stats.mediaFramesDropped++;
      stats.mediaBytesDropped += bytes;
      if (shouldLog(stats.mediaFramesDropped)) {
        log.warn("inbound audio ahead of real time dropped", {
          dropped_frames: stats.mediaFramesDropped,
          dropped_bytes: stats.mediaBytesDropped,
        });
      }
      return true;
    }
    let written: number;
    try {
      ({ written } = inboundAudio.setFromBase64(payload));
    } catch {
      pacer.refund(bytes);
      return false;
    }
    session.deliver({ type: "media", payload: inboundAudio.subarray(0, written) });
    return true;
  };

  const onFrame = (frame: InboundFrame, now: number) => {
    if (frame.event === "connected") return log.debug("media stream connected");
    if (frame.event === "start") return onStart(frame);
    if (!session) return drop("early", `${frame.event} before start ignored`);
    switch (frame.event) {
      case "media": {
        if (!onMedia(session, frame.media.payload, now)) {
          drop("malformed", "malformed frame ignored", { reason: "media payload is not base64" });
        }
        return;
      }
      default: {
        const event = telnyxTransportEvent(frame);
        if (event) session.deliver(event);
        return;
      }
    }
  };

  socket.addEventListener("message", (event) => {
    if (refused) return;
    // One clock read per frame, for the silence bound and the pacer.
    const now = performance.now();
    if (silence.armed) silence.restart(now);
    if (typeof event.data !== "string") {
      return drop("binary", "binary frame ignored (Telnyx sends JSON text)");
    }
    try {
      if (session) {
        // Nearly every frame is audio in Telnyx's usual shape: no JSON.parse for those.
        const payload = peekMediaPayload(event.data);
        if (payload !== undefined && onMedia(session, payload, now)) return;
      }
      const parsed = parseInboundFrame(event.data);
      if (!parsed.ok) {
        return drop("malformed", "malformed frame ignored", { reason: parsed.reason });
      }
      onFrame(parsed.frame, now);
    } catch (error) {
      log.error("frame handling failed", { error });
    }
  });
  socket.addEventListener("close", (event) => {
    silence.stop();
    pending.release();
    waitingForStart.abort();
    log.debug("media socket closed", { code: event.code });
    session?.deliver({ type: "socket_closed", code: event.code, reason: event.reason });
  });
  socket.addEventListener("error", (event) => {
    log.warn("media socket error", {
      error: event instanceof ErrorEvent ? event.message : "unknown",
    });
  });
}
