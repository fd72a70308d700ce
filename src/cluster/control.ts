/**
 * The control channel between the supervisor and its server processes: JSON over HTTP on a
 * loopback port only the supervisor listens on, authenticated by a token the children get in
 * their environment. Each child reports its counts; every report is answered with the latest
 * report of every live child, so whichever process `/health` reaches can speak for all of them,
 * and with the answering-machine results other processes received for calls they do not hold.
 *
 * @module
 */
import { z } from "zod";
import { delay } from "../async/deadline.ts";
import type { Logger } from "../log.ts";
import {
  type UrlSignature,
  USED_STREAM_URLS_CAPACITY,
  UsedSignatures,
} from "../security/url_signature.ts";
import { type AnsweredBy, AnsweredBySchema } from "../records/call_events.ts";

/** Marks a process as one of the supervisor's server processes: its index. */
export const WORKER_ENV = "TELNYX_OUTBOUND_WORKER";
/** The supervisor's control URL, e.g. `http://127.0.0.1:41234`. */
export const CONTROL_URL_ENV = "TELNYX_OUTBOUND_CONTROL_URL";
/** The bearer token of the control channel. */
export const CONTROL_TOKEN_ENV = "TELNYX_OUTBOUND_CONTROL_TOKEN";

/** What a server process reports about itself. */
export const WorkerReportSchema = z.object({
  worker: z.number().int().min(0),
  pid: z.number().int(),
  active_calls: z.number().int().min(0),
  /** Media sockets that have not sent `start` yet: a high figure means a slow or abusive peer. */
  pending_media_sockets: z.number().int().min(0),
  draining: z.boolean(),
});
export type WorkerReport = z.infer<typeof WorkerReportSchema>;

/**
 * The report of server process `worker` as of now, from its call registry: the same figures go
 * to the supervisor every second and into the `/health` this process answers.
 */
export function workerReport(
  worker: number,
  calls: { readonly active: number; readonly pending: number },
  draining: boolean,
): WorkerReport {
  return {
    worker,
    pid: Deno.pid,
    active_calls: calls.active,
    pending_media_sockets: calls.pending,
    draining,
  };
}

/** A report as sent: with the last shared detection result the process has seen. */
export const ReportRequestSchema = WorkerReportSchema.extend({
  answered_by_after: z.number().int().min(0).default(0),
});

/** An answering-machine result a process received for a call it holds no stream for. */
export const SharedAnsweredBySchema = z.object({
  call: z.string().min(1).max(256),
  answered_by: AnsweredBySchema,
  /** The process that received it (it has already kept it). */
  from: z.number().int().min(0),
});
/** The same as the supervisor hands it on, numbered. */
const NumberedAnsweredBySchema = SharedAnsweredBySchema.extend({ seq: z.number().int() });

/** The supervisor's answer to a report: the whole server. */
export const ClusterStateSchema = z.object({
  /** Processes asked for (`WORKERS`). */
  expected: z.number().int(),
  /** True once the supervisor is shutting down. */
  stopping: z.boolean(),
  /** Processes restarted after they exited on their own, since start. */
  restarts: z.number().int(),
  /** The latest report of each live process, with its age. */
  workers: z.array(WorkerReportSchema.extend({ reported_ms_ago: z.number() })),
  /** Shared detection results after the report's `answered_by_after`, from other processes. */
  answered_by: z.array(NumberedAnsweredBySchema).default([]),
});
export type ClusterState = z.infer<typeof ClusterStateSchema>;

/** A Stream URL's signature, claimed for one socket across every process. */
export const ClaimSchema = z.object({ sig: z.string().min(1).max(256), exp: z.string().max(32) });
export const ClaimResultSchema = z.object({ result: z.enum(["fresh", "reused", "full"]) });
export type ClaimResult = z.infer<typeof ClaimResultSchema>["result"];

/** Interval between a server process's reports. */
const REPORT_INTERVAL_MS = 1_000;
/** Longest a report (or the `/health` that waits for it) waits for the supervisor. */
const REPORT_TIMEOUT_MS = 1_000;

/** A server process's side of the channel. */
export class ClusterMember {
  readonly #url: string;
  readonly #token: string;
  /** Used only while the supervisor does not answer: replays still fail on this process. */
  readonly #localClaims = new UsedSignatures(USED_STREAM_URLS_CAPACITY);
  #claimsFailing = false;
  /** The last shared detection result handed to {@link onAnsweredBy}. */
  #answeredBySeen = 0;
  /** Receives the detection results other processes got for calls they do not hold. */
  onAnsweredBy: (callControlId: string, answeredBy: AnsweredBy) => void = () => {};

  constructor(readonly worker: number, url: string, token: string) {
    this.#url = url;
    this.#token = token;
  }

  /** The member this process is, when a supervisor started it; undefined otherwise. */
  static fromEnv(env: { get(name: string): string | undefined }): ClusterMember | undefined {
    const worker = env.get(WORKER_ENV);
    const url = env.get(CONTROL_URL_ENV);
    const token = env.get(CONTROL_TOKEN_ENV);
    if (worker === undefined || !url || !token) return undefined;
    return new ClusterMember(Number(worker), url, token);
  }

  /** Sends `report`; resolves with the whole server, or rejects when the supervisor did not answer. */
  async report(report: WorkerReport): Promise<ClusterState> {
    const response = await this.#post("/report", {
      ...report,
      answered_by_after: this.#answeredBySeen,
    });
    const state = ClusterStateSchema.parse(await response.json());
    for (const shared of state.answered_by) {
      if (shared.seq <= this.#answeredBySeen) continue;
      this.#answeredBySeen = shared.seq;
      if (shared.from !== this.worker) this.onAnsweredBy(shared.call, shared.answered_by);
    }
    return state;
  }

  /**
   * Hands a detection result for a call whose stream is not on this process to the others,
   * through the supervisor; they take it with their next report. Failures are logged only.
   */
  async shareAnsweredBy(
    callControlId: string,
    answeredBy: AnsweredBy,
    logger: Logger,
  ): Promise<void> {
    try {
      const response = await this.#post("/answered-by", {
        call: callControlId,
        answered_by: answeredBy,
        from: this.worker,
      });
      await response.body?.cancel();
    } catch (error) {
      logger.warn("cannot pass the detection result to the other server processes", {
        call: callControlId,
        error,
      });
    }
  }

  /**
   * Claims a Stream URL's signature for one socket, whichever process the socket reached: the
   * supervisor keeps the one set of used signatures. Should it not answer, the claim falls back
   * to this process's own set (logged once), so calls go on with replays refused here at least.
   */
  async claim(signature: UrlSignature, logger: Logger): Promise<ClaimResult> {
    try {
      const response = await this.#post("/claim", { sig: signature.sig, exp: signature.exp });
      const { result } = ClaimResultSchema.parse(await response.json());
      this.#claimsFailing = false;
      // Remembered here too, for the claims made should the supervisor stop answering.
      this.#localClaims.claim(signature);
      return result;
    } catch (error) {
      if (!this.#claimsFailing) {
        logger.warn("cannot claim a stream URL with the supervisor; checking this process only", {
          error,
        });
      }
      this.#claimsFailing = true;
      return this.#localClaims.claim(signature);
    }
  }

  /**
   * POSTs `body` as JSON to the supervisor's `path`; resolves with its answer when it is a
   * success, and rejects otherwise, the answer's body cancelled.
   */
  async #post(path: string, body: unknown): Promise<Response> {
    const response = await fetch(`${this.#url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(REPORT_TIMEOUT_MS),
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`the supervisor answered ${response.status}`);
    }
    return response;
  }

  /**
   * Reports `snapshot()` every {@link REPORT_INTERVAL_MS} until `signal` aborts. Failures are
   * logged once per run of failures: the calls of this process go on regardless.
   */
  async reportEvery(
    snapshot: () => WorkerReport,
    signal: AbortSignal,
    logger: Logger,
  ): Promise<void> {
    let failing = false;
    while (!signal.aborted) {
      try {
        await this.report(snapshot());
        failing = false;
      } catch (error) {
        if (!failing) logger.warn("cannot report to the supervisor", { error });
        failing = true;
      }
      await delay(REPORT_INTERVAL_MS, signal).catch(() => {});
    }
  }
}

/**
 * Resolves when stdin ends: a supervisor holds its children's stdin open for its whole life, so
 * this is how a child learns that its supervisor is gone, even when it was killed outright.
 */
export async function parentGone(): Promise<void> {
  try {
    for await (const _ of Deno.stdin.readable) { /* the supervisor never writes */ }
  } catch { /* a closed or broken pipe means the same */ }
}
