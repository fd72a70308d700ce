/**
 * The call-record API, behind the same bearer token as `/start`:
 * - `GET /calls/:id`: the whole record with its transcript;
 * - `GET /calls?status=&since=&until=&limit=&cursor=`: summaries, newest first;
 * - `DELETE /calls/:id`: erases the record, its transcript and custom data;
 * - `POST /calls/:id/hangup`: ends a live call through Telnyx, whichever instance holds it.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppDeps } from "../app.ts";
import { missingFor } from "../config.ts";
import { ApiError } from "../http/api_error.ts";
import { CALL_STATUSES, MAX_CALL_ID_CHARS } from "../records/call_record.ts";
import { BadCursorError, type CallStore, type ListQuery, MAX_PAGE } from "../records/call_store.ts";
import { requireApiToken } from "../http/require_api_token.ts";
import { TelnyxRequestError } from "../telnyx/calls.ts";

/** Default `limit` of `GET /calls`. */
const DEFAULT_PAGE = 20;

/** A time filter: ISO 8601 or epoch milliseconds. */
const timeParam = (name: string) =>
  z.string().optional().transform((value, ctx) => {
    if (value === undefined) return undefined;
    const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
    if (Number.isFinite(ms) && ms >= 0) return ms;
    ctx.addIssue({
      code: "custom",
      message: `${name} must be an ISO 8601 time (e.g. 2026-01-31T12:00:00Z) or epoch ` +
        `milliseconds; got ${JSON.stringify(value.slice(0, 64))}`,
    });
    return z.NEVER;
  });

const ListQuerySchema = z.strictObject({
  status: z.enum(CALL_STATUSES, {
    error: `status must be one of: ${CALL_STATUSES.join(", ")}`,
  }).optional(),
  since: timeParam("since"),
  until: timeParam("until"),
  limit: z.string().optional().transform((value, ctx) => {
    if (value === undefined) return DEFAULT_PAGE;
    const n = Number(value);
    if (/^\d+$/.test(value) && n >= 1 && n <= MAX_PAGE) return n;
    ctx.addIssue({
      code: "custom",
      message: `limit must be an integer from 1 to ${MAX_PAGE}; got ${
        JSON.stringify(value.slice(0, 64))
      }`,
    });
    return z.NEVER;
  }),
  cursor: z.string().min(1, { error: "cursor must not be empty" }).max(1024, {
    error: "cursor is too long: pass the next_cursor of the previous page as is",
  }).optional(),
}, {
  error: (issue) =>
    issue.code === "unrecognized_keys"
      ? `unknown query parameter ${issue.keys.join(", ")}; accepted: status, since, until, ` +
        "limit, cursor"
      : undefined,
});

/** Parses the `GET /calls` query; a bad filter is a 400 naming the parameter. */
function parseListQuery(params: Record<string, string>): ListQuery {
  const parsed = ListQuerySchema.safeParse(params);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({
      parameter: i.code === "unrecognized_keys" ? i.keys.join(", ") : i.path.join("."),
      message: i.message,
    }));
    throw new ApiError(400, "invalid_query", issues.map((i) => i.message).join("; "), { issues });
  }
  const query = parsed.data;
  if (query.since !== undefined && query.until !== undefined && query.since > query.until) {
    throw new ApiError(400, "invalid_query", "since must not be after until", {
      issues: [{ parameter: "since", message: "since must not be after until" }],
    });
  }
  return query;
}

/** The `/calls` routes. */
export function callsRoute(
  deps: Pick<AppDeps, "config" | "logger" | "calls" | "registry" | "records" | "callExtras">,
): Hono {
  const { config, logger } = deps;

  const requireToken = requireApiToken(config);

  const store = (): CallStore => {
    if (!deps.records) {
      throw new ApiError(
        503,
        "not_configured",
        "Call records are not available on this server: the KV store did not open (see logs " +
          "and KV_PATH).",
        { missing: [] },
      );
    }
    return deps.records.store;
  };

  const callId = (id: string): string => {
    if (id.length === 0 || id.length > MAX_CALL_ID_CHARS) throw unknownCall(id);
    return id;
  };

  return new Hono()
    .use("/calls", requireToken)
    .use("/calls/*", requireToken)
    .get("/calls", async (c) => {
      const records = store();
      const query = parseListQuery(c.req.query());
      try {
        return c.json(await records.list(query));
      } catch (error) {
        if (error instanceof BadCursorError) {
          throw new ApiError(
            400,
            "invalid_query",
            "cursor is not one this query returned: pass next_cursor from the previous page " +
              "with the same status, since and until.",
            { issues: [{ parameter: "cursor", message: error.message }] },
          );
        }
        throw error;
      }
    })
    .get("/calls/:id", async (c) => {
      const id = callId(c.req.param("id"));
      const records = store();
      const webhookDeliveries = await deps.callExtras?.webhookDeliveries(id);
      const record = await records.get(id, { webhookDeliveries });
      if (!record) throw unknownCall(id);
      return c.json(record);
    })
    .delete("/calls/:id", async (c) => {
      const id = callId(c.req.param("id"));
      if (!(await store().delete(id))) throw unknownCall(id);
      await deps.callExtras?.forget(id);
      logger.info("call record deleted", { call: id });
      return c.json({ id, deleted: true });
    })
    .post("/calls/:id/hangup", async (c) => {
      const id = callId(c.req.param("id"));
      const records = store();
      const missing = missingFor(config, "start_call");
      if (!deps.calls) {
        throw new ApiError(
          503,
          "not_configured",
          `Cannot hang up calls: set ${missing.join(", ")} in the environment (see env.example).`,
          { missing },
        );
      }
      const call = await records.header(id);
      if (!call) throw unknownCall(id);
      if (call.status === "ended") {
        throw new ApiError(409, "call_ended", `Call ${id} has already ended.`, {
          end_reason: call.end_reason,
        });
      }
      const live = deps.registry.sessions().find((s) => s.info.callControlId === id);
      if (live) {
        // The session hangs up through Telnyx and records why.
        await live.hangUp("bot_hung_up", "api_hangup");
        return c.json({ id, status: live.hangupConfirmed ? "hung_up" : "hangup_unconfirmed" });
      }
      let outcome: "hung_up" | "already_ended";
      try {
        outcome = await deps.calls.hangup(id);
      } catch (error) {
        if (!(error instanceof TelnyxRequestError)) throw error;
        logger.warn("telnyx refused the hang-up", { call: id, error: error.message });
        throw new ApiError(502, "telnyx_error", error.message, { telnyx_status: error.status });
      }
      if (outcome === "hung_up") {
        deps.records!.record(id, { type: "ended", at: Date.now(), reason: "api_hangup" });
      }
      logger.info("call hung up through the API", { call: id, outcome });
      return c.json({ id, status: outcome });
    });
}

function unknownCall(id: string): ApiError {
  return new ApiError(
    404,
    "call_not_found",
    `No call record ${JSON.stringify(id.slice(0, 80))}: it never existed here, was deleted, or ` +
      "is past CALL_RETENTION_DAYS.",
  );
}
