/**
 * What the system that asked for a call learns about it: once the record has committed a step,
 * the matching webhook event goes out (`call.initiated`, `call.answered`, `call.ended` with the
 * whole record), and after the end the post-call analysis runs and is stored and sent as
 * `call.analyzed`. All of it happens after KV commits, never on a call's audio path, and a
 * failure here is logged and recorded, never felt by a call.
 *
 * @module
 */
import { settledWithin } from "../async/deadline.ts";
import { type AnalysisLlm, analyzeCall } from "../analysis/analyze_call.ts";
import type { Logger } from "../log.ts";
import type { CallEvent } from "../records/call_events.ts";
import type { CallRecordView, StoredCall } from "../records/call_record.ts";
import type { CallRecorder } from "../records/call_recorder.ts";
import type { Webhooks } from "../webhooks/webhooks.ts";

/** What {@link reportCallOutcomes} needs. */
export interface CallOutcomeDeps {
  records: CallRecorder;
  /** Undefined when WEBHOOK_SECRET is unset: analysis still runs and is stored. */
  webhooks: Webhooks | undefined;
  /** Undefined when OPENAI_API_KEY is unset: calls that asked for analysis record why not. */
  analysisLlm: AnalysisLlm | undefined;
  logger: Logger;
  /** Aborted at shutdown: a running analysis stops and is recorded as failed. */
  signal: AbortSignal;
}

/** The running reporter; {@link CallOutcomes.idle} lets shutdown wait for work in progress. */
export interface CallOutcomes {
  /** Resolves once the work in progress settled, or after `ms`; true when it settled. */
  idle(ms: number): Promise<boolean>;
  /** Stops listening to the records. */
  stop(): void;
}

/** Starts sending outcomes for every call the recorder commits events of. */
export function reportCallOutcomes(deps: CallOutcomeDeps): CallOutcomes {
  const { records, webhooks, logger } = deps;
  const working = new Set<Promise<void>>();
  /** Calls whose `call.answered` left here: the stream start after Telnyx's answer adds none. */
  const answered = new Set<string>();
  /** Calls being concluded here: an `ended` repeated by a callback meanwhile is ignored. */
  const concluded = new Set<string>();

  const track = (callId: string, what: string, work: () => Promise<void>) => {
    const task = work().catch((error) => {
      logger.error(`call outcome: ${what} failed`, { call: callId, error });
    }).finally(() => working.delete(task));
    working.add(task);
  };

  /**
   * Custom data of calls placed here, from their `placed` event, so `call.initiated` and
   * `call.answered` need no KV read for it. Dropped at the end; bounded for calls that end on
   * another instance.
   */
  const customData = new Map<string, Record<string, unknown>>();
  const MAX_REMEMBERED = 10_000;

  const send = async (
    callId: string,
    type: Parameters<Webhooks["emit"]>[1],
    call: StoredCall,
    record: CallRecordView | null,
  ) => {
    if (!webhooks || !record) return;
    await webhooks.emit(callId, type, record, { webhookUrl: call.webhook_url ?? undefined });
  };

  /** `call.initiated` / `call.answered`: the record as committed with the event. */
  const sendProgress = async (
    callId: string,
    type: "call.initiated" | "call.answered",
    call: StoredCall,
  ) => {
    if (!webhooks) return;
    const record = await records.store.viewAt(call, { customData: customData.get(callId) });
    await send(callId, type, call, record);
  };

  /** `call`: the header as committed with the end, which holds every event reported before. */
  const conclude = async (
    callId: string,
    call: StoredCall,
    known: Record<string, unknown> | undefined,
  ) => {
    const record = await records.store.viewAt(call, { customData: known });
    await send(callId, "call.ended", call, record);
    const spec = call.analysis_request;
    if (!spec || !record) return;
    const outcome = deps.analysisLlm
      ? await analyzeCall({
        transcript: record.transcript ?? [],
        body: record.custom_data ?? {},
        spec,
        llm: deps.analysisLlm,
        signal: deps.signal,
      })
      : { status: "failed" as const, error: "OPENAI_API_KEY is not set" };
    await records.store.setAnalysis(callId, outcome);
    if (outcome.status === "failed") {
      logger.warn("post-call analysis failed", { call: callId, error: outcome.error });
    }
    await send(callId, "call.analyzed", call, webhooks ? await records.store.get(callId) : null);
  };

  const onEvent = (callId: string, event: CallEvent, call: StoredCall) => {
    switch (event.type) {
      case "placed":
        if (customData.size >= MAX_REMEMBERED) customData.delete(customData.keys().next().value!);
        customData.set(callId, event.body);
        return track(callId, "call.initiated", () => sendProgress(callId, "call.initiated", call));
      case "progress":
      case "streaming":
        // Telnyx's `in-progress`, or the stream starting when no callback came first.
        if (call.timeline.answered === undefined || call.status === "ended") return;
        if (event.type === "progress" && event.status !== "in-progress") return;
        if (answered.has(callId)) return;
        answered.add(callId);
        return track(callId, "call.answered", () => sendProgress(callId, "call.answered", call));
      case "ended": {
        // Already concluded (its analysis is stored), or being concluded right now.
        if (concluded.has(callId) || call.analysis !== null) return;
        concluded.add(callId);
        answered.delete(callId);
        const known = customData.get(callId);
        customData.delete(callId);
        return track(
          callId,
          "call.ended",
          () => conclude(callId, call, known).finally(() => concluded.delete(callId)),
        );
      }
    }
  };

  const unsubscribe = records.onCallEvent(onEvent);
  return {
    idle: (ms) => settledWithin(Promise.all(working), ms),
    stop: unsubscribe,
  };
}
