/**
 * The call console: `GET /console` is a page of the live calls of this process and the recent
 * call records, each with its transcript, barge-ins, per-turn latency and end reason, and a
 * hang-up button for live calls. The page reads the JSON routes below and refreshes itself from
 * a server-sent event stream (`/console/api/events`) that tells it which call changed.
 *
 * Open from loopback; from elsewhere only with the API token in the Authorization header
 * (see {@link requireLoopbackOrToken}).
 *
 * @module
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppDeps } from "../app.ts";
import { AsyncQueue } from "../async/async_queue.ts";
import { ApiError } from "../http/api_error.ts";
import {
  type CallRecordView,
  type CallSummary,
  MAX_CALL_ID_CHARS,
} from "../records/call_record.ts";
import type { CallSession } from "../session/call_session.ts";
import { PAGE_HEADERS, pageFiles, SCRIPT_HEADERS } from "../pages/pages.ts";
import { requireLoopbackOrToken } from "./page_access.ts";

/** Recent records the console lists. */
const RECENT_CALLS = 30;
/** How often the event stream checks for calls starting or ending, and for shutdown. */
const TICK_MS = 1_000;
/** A comment line this often keeps proxies from closing an idle event stream. */
const KEEP_ALIVE_TICKS = 15;
/** Notices queued for one slow page before it misses some (it re-reads everything anyway). */
const MAX_QUEUED_NOTICES = 1_000;

/** A live call as the console lists it. */
export interface LiveCall {
  id: string;
  to: string | null;
  from: string | null;
  started_at: string;
  state: string;
}

/** What `GET /console/api/calls` answers. */
export interface ConsoleSnapshot {
  live: LiveCall[];
  recent: CallSummary[];
  /** False when call records are off: only live calls can be shown. */
  records: boolean;
}

/** One call's detail: its record (when records are on) and whether it is live here. */
export interface ConsoleCall {
  id: string;
  live: boolean;
  record: CallRecordView | null;
}

/** What the event stream tells a page; it re-reads what it shows on each. */
type Notice =
  | { kind: "call"; id: string; event: string }
  | { kind: "tick" };

const loadPage = pageFiles({
  html: new URL("./console.html", import.meta.url),
  js: new URL("./console.js", import.meta.url),
});

function liveCall(session: CallSession): LiveCall {
  return {
    id: session.info.callControlId,
    to: session.info.to ?? null,
    from: session.info.from ?? null,
    started_at: new Date(session.startedAt).toISOString(),
    state: session.state,
  };
}

/** The console page and its API. */
export function consoleRoute(
  deps: Pick<AppDeps, "config" | "logger" | "registry" | "records" | "isDraining">,
  options: { tickMs?: number } = {},
): Hono {
  const tickMs = options.tickMs ?? TICK_MS;
  const { registry, logger } = deps;
  const access = requireLoopbackOrToken(deps.config);

  const liveIds = () => registry.sessions().map((s) => s.info.callControlId).join(",");

  return new Hono()
    .get("/console", async (c) => {
      return c.html((await loadPage()).html, 200, PAGE_HEADERS);
    })
    .get("/console/console.js", async (c) => {
      return c.body((await loadPage()).js, 200, SCRIPT_HEADERS);
    })
    .use("/console/api/*", access)
    .get("/console/api/calls", async (c) => {
      const snapshot: ConsoleSnapshot = {
        live: registry.sessions().map(liveCall),
        recent: deps.records ? (await deps.records.store.list({ limit: RECENT_CALLS })).calls : [],
        records: deps.records !== undefined,
      };
      return c.json(snapshot);
    })
    .get("/console/api/calls/:id", async (c) => {
      const id = c.req.param("id");
      if (id.length > MAX_CALL_ID_CHARS) throw unknownCall(id);
      const record = (await deps.records?.store.get(id)) ?? null;
      const live = registry.byCall(id) !== undefined;
      if (!record && !live) throw unknownCall(id);
      const detail: ConsoleCall = { id, live, record };
      return c.json(detail);
    })
    .post("/console/api/calls/:id/hangup", async (c) => {
      const id = c.req.param("id");
      const session = registry.byCall(id);
      if (!session) {
        throw new ApiError(
          409,
          "call_not_live",
          `Call ${JSON.stringify(id.slice(0, 80))} is not live on this instance: it has ended, ` +
            "or another instance holds it (use POST /calls/:id/hangup).",
        );
      }
      logger.info("hang-up from the console", { call: id });
      await session.hangUp("bot_hung_up", "api_hangup");
      return c.json({ id, status: session.hangupConfirmed ? "hung_up" : "hangup_unconfirmed" });
    })
    .get("/console/api/events", (c) => {
      return streamSSE(c, async (stream) => {
        const notices = new AsyncQueue<Notice>({
          limit: MAX_QUEUED_NOTICES,
          droppable: (n) => n.kind === "tick",
        });
        const unsubscribe = deps.records?.onCallEvent((id, event) => {
          notices.push({ kind: "call", id, event: event.type });
        });
        const ticker = setInterval(() => notices.push({ kind: "tick" }), tickMs);
        stream.onAbort(() => notices.close());
        try {
          let live = liveIds();
          let ticks = 0;
          await stream.writeSSE({ event: "hello", data: JSON.stringify({ live: live }) });
          for await (const notice of notices) {
            // Deno's server shutdown waits for open responses: the stream ends when draining.
            if (deps.isDraining()) break;
            if (notice.kind === "call") {
              await stream.writeSSE({ event: "call", data: JSON.stringify(notice) });
              continue;
            }
            const now = liveIds();
            if (now !== live) {
              live = now;
              await stream.writeSSE({ event: "live", data: JSON.stringify({ live }) });
            }
            if (++ticks % KEEP_ALIVE_TICKS === 0) await stream.write(": keep-alive\n\n");
          }
        } finally {
          clearInterval(ticker);
          unsubscribe?.();
          notices.close();
        }
      });
    });
}

function unknownCall(id: string): ApiError {
  return new ApiError(
    404,
    "call_not_found",
    `No call ${JSON.stringify(id.slice(0, 80))}: not live here and no record of it (deleted, ` +
      "past CALL_RETENTION_DAYS, or call records are off).",
  );
}
