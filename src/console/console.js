// The call console page: reads /console/api/*, re-reads on every server-sent event. The API token
// (needed from anywhere but the service's own machine) is kept for this tab only and sent as an
// Authorization header, never in a URL.
import { $, el, LATENCY_BARS } from "../pages/pages.js";

const RECONNECT_MS = 2000;
const REFRESH_DEBOUNCE_MS = 150;

const state = { selected: null, snapshot: null, refreshTimer: 0 };

function authHeaders() {
  const token = sessionStorage.getItem("apiToken");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

class NeedsToken extends Error {}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...authHeaders(), ...init.headers } });
  if (res.status === 401 || res.status === 403) {
    $("token-form").classList.add("shown");
    throw new NeedsToken((await res.json()).error?.message ?? "token needed");
  }
  if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error?.message ?? res.status);
  return res.json();
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function clock(ms) {
  const s = ms / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;
}

function callRow(call, live) {
  const badge = live
    ? el("span", { class: "badge live" }, "live")
    : el("span", { class: "badge" }, call.end_reason ?? call.status);
  return el(
    "li",
    {
      "data-call": call.id,
      class: call.id === state.selected ? "selected" : "",
      onclick: () => select(call.id),
    },
    el("span", { class: "id", title: call.id }, call.to ?? call.id),
    badge,
  );
}

function renderLists() {
  const { live, recent, records } = state.snapshot;
  const liveIds = new Set(live.map((c) => c.id));
  $("live-calls").replaceChildren(
    ...(live.length ? live.map((c) => callRow(c, true)) : [el("li", { class: "muted" }, "none")]),
  );
  const ended = recent.filter((c) => !liveIds.has(c.id));
  $("recent-calls").replaceChildren(
    ...(ended.length
      ? ended.map((c) => callRow(c, false))
      : [el("li", { class: "muted" }, "none")]),
  );
  $("records-note").textContent = records
    ? ""
    : "Call records are off on this server (KV did not open): only live calls are shown.";
}

function latencyChart(turns) {
  const max = Math.max(
    1,
    ...turns.flatMap((t) => LATENCY_BARS.map(([key]) => t.latency?.[key] ?? 0)),
  );
  return (latency) =>
    el(
      "div",
      { class: "bars" },
      LATENCY_BARS.filter(([key]) => latency[key] !== undefined).map(([key, label]) => [
        el("span", {}, label),
        el("span", {
          class: `bar ${key}`,
          style: `width:${(100 * latency[key] / max).toFixed(1)}%`,
          "data-latency": key,
        }),
        el("span", {}, `${latency[key]} ms`),
      ]),
    );
}

function renderDetail(detail) {
  const record = detail.record;
  const rows = [
    ["Call", detail.id],
    ["To", record?.to ?? "—"],
    ["Status", detail.live ? "live" : record?.status ?? "—"],
    ["Answered by", record?.answered_by ?? "—"],
    ["End reason", record?.end_reason ?? "—"],
    ["Duration", record?.duration_seconds != null ? `${record.duration_seconds} s` : "—"],
  ];
  const turns = record?.transcript ?? [];
  const bars = latencyChart(turns);
  const barges = turns.filter((t) => t.interrupted).length;
  // el() drops the parts that do not apply (null); replaceChildren would print them.
  $("detail").replaceChildren(
    ...el("div", {}, [
      el("h2", {}, "Call"),
      el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)])),
      detail.live
        ? el("button", { id: "hangup", onclick: () => hangUp(detail.id) }, "Hang up")
        : null,
      el("h2", {}, `Transcript · ${plural(turns.length, "turn")} · ${plural(barges, "barge-in")}`),
      record && record.transcript === null
        ? el("p", { class: "muted" }, `The transcript is kept by ${record.transcript_location}.`)
        : null,
      el(
        "ol",
        { class: "turns" },
        turns.map((t) =>
          el(
            "li",
            { class: `turn role-${t.role}`, "data-role": t.role },
            el("span", { class: "offset" }, clock(t.offset_ms)),
            el("span", { class: "who" }, t.role === "user" ? "callee" : "bot"),
            el(
              "span",
              { class: "text" },
              t.text,
              t.interrupted ? [" ", el("span", { class: "badge barge" }, "barged in")] : null,
            ),
            t.latency ? bars(t.latency) : null,
          )
        ),
      ),
      record?.errors?.length
        ? [
          el("h2", {}, "Errors"),
          record.errors.map((e) => el("p", { class: "error" }, `${e.source}: ${e.message}`)),
        ]
        : null,
    ]).childNodes,
  );
}

async function hangUp(id) {
  const button = $("hangup");
  button.disabled = true;
  try {
    await api(`/console/api/calls/${encodeURIComponent(id)}/hangup`, { method: "POST" });
  } catch (error) {
    button.after(el("p", { class: "error" }, String(error.message)));
  }
}

async function select(id) {
  state.selected = id;
  if (state.snapshot) renderLists();
  try {
    renderDetail(await api(`/console/api/calls/${encodeURIComponent(id)}`));
  } catch (error) {
    if (!(error instanceof NeedsToken)) {
      $("detail").replaceChildren(el("p", { class: "error" }, String(error.message)));
    }
  }
}

async function refresh() {
  state.snapshot = await api("/console/api/calls");
  const first = state.snapshot.live[0]?.id ?? state.snapshot.recent[0]?.id;
  if (state.selected === null && first) state.selected = first;
  renderLists();
  if (state.selected) await select(state.selected);
}

function refreshSoon() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => refresh().catch(() => {}), REFRESH_DEBOUNCE_MS);
}

// EventSource cannot send headers, so the stream is read with fetch.
async function follow() {
  for (;;) {
    try {
      const res = await fetch("/console/api/events", { headers: authHeaders() });
      if (res.status === 401 || res.status === 403) {
        $("token-form").classList.add("shown");
        $("connection").textContent = "API token needed";
        return;
      }
      $("connection").textContent = "live";
      await refresh();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: /m.test(message)) refreshSoon();
        }
      }
    } catch {
      // The server restarted or the network dropped: reconnect below.
    }
    $("connection").textContent = "reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("apiToken", $("token").value);
  $("token").value = "";
  $("token-form").classList.remove("shown");
  follow();
});

follow();
