/**
 * `GET /health`: whether the server takes calls, and how many it holds. Under a supervisor
 * (`WORKERS` above 1) the figures are the whole server's: this process's own, fresh, and the
 * other processes' latest reports, at most a second or so old.
 *
 * @module
 */
import { Hono } from "hono";
import type { AppDeps } from "../app.ts";
import { workerReport } from "../cluster/control.ts";

/** The `/health` route. */
export function healthRoute(
  deps: Pick<AppDeps, "config" | "registry" | "version" | "isDraining" | "cluster">,
): Hono {
  return new Hono().get("/health", async (c) => {
    const draining = deps.isDraining();
    const base = { version: deps.version, env: deps.config.ENV };
    if (!deps.cluster) {
      return c.json({
        status: draining ? "draining" : "ok",
        active_calls: deps.registry.active,
        pending_media_sockets: deps.registry.pending,
        ...base,
      });
    }
    const worker = deps.cluster.worker;
    const own = workerReport(worker, deps.registry, draining);
    let cluster;
    try {
      cluster = await deps.cluster.report(own);
    } catch {
      // The calls here go on without the supervisor; say that the figures are this process's.
      return c.json({
        status: draining ? "draining" : "ok",
        active_calls: own.active_calls,
        pending_media_sockets: own.pending_media_sockets,
        workers: { this: worker },
        warning: "the supervisor did not answer: the figures are this process's only",
        ...base,
      });
    }
    const others = cluster.workers.filter((w) => w.worker !== worker);
    const all = [{ ...own, reported_ms_ago: 0 }, ...others];
    const sum = (key: "active_calls" | "pending_media_sockets") =>
      all.reduce((n, w) => n + w[key], 0);
    return c.json({
      status: draining || cluster.stopping ? "draining" : "ok",
      active_calls: sum("active_calls"),
      pending_media_sockets: sum("pending_media_sockets"),
      workers: {
        expected: cluster.expected,
        live: all.length,
        restarts: cluster.restarts,
        this: worker,
        processes: all.sort((a, b) => a.worker - b.worker),
      },
      ...base,
    });
  });
}
