/**
 * `GET /ws`: the Telnyx media WebSocket. A socket is served only with a verified Stream URL,
 * once per URL, and within the caps on sockets that have not sent `start` yet.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppDeps } from "../app.ts";
import { ApiError } from "../http/api_error.ts";
import { clientAddress } from "../http/client_address.ts";
import {
  type UrlSignature,
  type UrlSigner,
  USED_STREAM_URLS_CAPACITY,
  UsedSignatures,
} from "../security/url_signature.ts";
import type { HangupCall } from "../session/call_session.ts";
import { refuseMediaSocket, serveMediaSocket } from "../session/media_socket.ts";
import { BodyParamError, type CustomData, decodeBodyParam } from "../telnyx/body_param.ts";
import type { TelnyxCalls } from "../telnyx/calls.ts";

/** The `/ws` route. */
export function mediaRoute(
  deps: Pick<
    AppDeps,
    "config" | "logger" | "registry" | "signer" | "calls" | "onSession" | "events" | "cluster"
  >,
): Hono {
  const { config, logger, registry } = deps;
  // Under a supervisor every process checks the one set it keeps.
  const cluster = deps.cluster;
  const usedUrls: StreamUrlClaims = cluster
    ? { claim: (signature) => cluster.claim(signature, logger) }
    : new UsedSignatures(USED_STREAM_URLS_CAPACITY);
  const hangupCall = hangupVia(deps.calls);

  return new Hono().get("/ws", async (c) => {
    const request = c.req.raw;
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      throw new ApiError(
        426,
        "upgrade_required",
        "/ws is the Telnyx media WebSocket; connect with a WebSocket client.",
        {},
        { Upgrade: "websocket" },
      );
    }
    // Refused before the upgrade, so a flood of silent sockets costs no more than a request.
    const client = clientAddress(c.env);
    if (registry.pending >= config.MAX_PENDING_MEDIA_SOCKETS) {
      throw new ApiError(
        503,
        "too_many_pending_sockets",
        `${registry.pending} media sockets are waiting for their start frame, the limit ` +
          "(MAX_PENDING_MEDIA_SOCKETS); try again shortly.",
        { limit: config.MAX_PENDING_MEDIA_SOCKETS },
        { "Retry-After": "1" },
      );
    }
    if (registry.pendingFrom(client) >= config.MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT) {
      throw new ApiError(
        429,
        "too_many_pending_sockets_from_client",
        `This client already has ${registry.pendingFrom(client)} media sockets waiting for ` +
          "their start frame, the limit (MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT); send start on " +
          "those or close them.",
        { limit: config.MAX_PENDING_MEDIA_SOCKETS_PER_CLIENT },
        { "Retry-After": "1" },
      );
    }

    const accepted = await acceptSocketUrl(deps.signer, usedUrls, new URL(request.url));
    // Deno's own idle timeout re-arms a timer on every message, 50 a second per call; the
    // media socket bounds silence itself (MEDIA_IDLE_TIMEOUT_MS), without a timer per frame.
    const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    if (!accepted.ok) {
      logger.warn("refusing media socket", { reason: accepted.reason });
      refuseMediaSocket(socket, accepted.reason, {
        registry,
        client,
        logger,
        closeHandshakeMs: config.MEDIA_CLOSE_TIMEOUT_MS,
      });
      return response;
    }
    serveMediaSocket(socket, {
      body: accepted.body,
      callControlId: accepted.call,
      client,
      startTimeoutMs: config.MEDIA_START_TIMEOUT_MS,
      idleTimeoutMs: config.MEDIA_IDLE_TIMEOUT_MS,
      closeHandshakeMs: config.MEDIA_CLOSE_TIMEOUT_MS,
      logger,
      registry,
      hangupCall,
      onSession: deps.onSession,
      events: deps.events,
    });
    return response;
  });
}

type SocketUrlCheck =
  | { ok: true; call: string; body: CustomData }
  | { ok: false; reason: string };

/** Where a Stream URL's signature is claimed for its one socket. */
interface StreamUrlClaims {
  claim(
    signature: UrlSignature,
  ): "fresh" | "reused" | "full" | Promise<"fresh" | "reused" | "full">;
}

/** Whether a media socket URL is genuine, bound to a call, and used for the first time. */
async function acceptSocketUrl(
  signer: UrlSigner | undefined,
  usedUrls: StreamUrlClaims,
  url: URL,
): Promise<SocketUrlCheck> {
  if (!signer) {
    return {
      ok: false,
      reason: "server cannot verify signatures (no BODY_SIGNING_SECRET/TELNYX_API_KEY)",
    };
  }
  const check = await signer.verifyUrl(url, "ws");
  if (!check.ok) return { ok: false, reason: `signature ${check.reason}` };
  const call = check.fields.call;
  if (!call) return { ok: false, reason: "stream URL is not bound to a call" };
  let body: CustomData = {};
  if (check.fields.body) {
    try {
      body = decodeBodyParam(check.fields.body);
    } catch (error) {
      return {
        ok: false,
        reason: error instanceof BodyParamError ? error.message : "body undecodable",
      };
    }
  }
  // Claimed only once everything else holds, so a refused attempt does not burn the URL.
  switch (await usedUrls.claim(check.signature)) {
    case "reused":
      return { ok: false, reason: "stream URL already used by another socket" };
    case "full":
      return { ok: false, reason: "too many stream URLs in use; try again shortly" };
    case "fresh":
      return { ok: true, call, body };
  }
}

function hangupVia(calls: TelnyxCalls | undefined): HangupCall {
  return (callControlId) => {
    if (!calls) return Promise.reject(new Error("TELNYX_API_KEY is not set; cannot hang up"));
    return calls.hangup(callControlId);
  };
}
