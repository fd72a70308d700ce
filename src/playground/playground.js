// The playground page: the microphone goes to the server as 16 kHz 16-bit PCM over a WebSocket,
// the bot's audio comes back as PCM and is played at once; the page reports which marks have
// played (so the server knows what was heard) and drops its queue when the server says `clear`
// (the caller talked over the bot). The API token, when needed, goes in the first message,
// never in the URL.
import { $, el, LATENCY_BARS } from "../pages/pages.js";

const CAPTURE_RATE = 16000;
/** Audio scheduled this far ahead of the clock, so the first chunk never starts late. */
const PLAY_LEAD_S = 0.02;
const MARK_CHECK_MS = 20;

/** Counters the browser tests read; also handy in the devtools console. */
const stats = {
  audioChunks: 0,
  audioSamples: 0,
  clears: 0,
  marksPlayed: 0,
  framesSent: 0,
  interims: 0,
  /** Buffers that were playing or queued when a clear stopped them. */
  stoppedSources: 0,
  playing: () => player.sources.size,
};
globalThis.playgroundState = stats;

const player = { next: 0, sources: new Set(), marks: [], rate: CAPTURE_RATE };
let call = null;

function customData() {
  const area = $("custom-data");
  try {
    const value = JSON.parse(area.value || "{}");
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error('custom data must be a JSON object, e.g. {"name": "Zoë"}');
    }
    area.classList.remove("invalid");
    $("custom-data-error").textContent = "";
    return value;
  } catch (error) {
    area.classList.add("invalid");
    $("custom-data-error").textContent = error.message;
    return undefined;
  }
}
$("custom-data").addEventListener("input", customData);

function play(ctx, buffer) {
  const pcm = new Int16Array(buffer);
  if (pcm.length === 0) return;
  stats.audioChunks++;
  stats.audioSamples += pcm.length;
  const audio = ctx.createBuffer(1, pcm.length, player.rate);
  const channel = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
  const source = ctx.createBufferSource();
  source.buffer = audio;
  source.connect(ctx.destination);
  const at = Math.max(ctx.currentTime + PLAY_LEAD_S, player.next);
  source.start(at);
  player.next = at + audio.duration;
  player.sources.add(source);
  source.onended = () => player.sources.delete(source);
}

function clearPlayback(ctx) {
  stats.stoppedSources += player.sources.size;
  for (const source of player.sources) source.stop();
  player.sources.clear();
  player.marks = [];
  player.next = ctx.currentTime;
  stats.clears++;
}

function reportPlayedMarks(ctx, socket) {
  while (player.marks.length && ctx.currentTime >= player.marks[0].at) {
    const mark = player.marks.shift();
    stats.marksPlayed++;
    socket.send(JSON.stringify({ type: "played", name: mark.name }));
  }
}

function addTurn(turn) {
  const max = Math.max(1, ...LATENCY_BARS.map(([key]) => turn.latency?.[key] ?? 0), 1500);
  $("turns").append(
    el(
      "li",
      { class: `turn ${turn.role}`, "data-role": turn.role },
      el("span", { class: "who" }, turn.role === "user" ? "you" : "bot"),
      el(
        "span",
        { class: "text" },
        turn.text,
        turn.interrupted ? [" ", el("span", { class: "badge" }, "you cut in")] : null,
      ),
      turn.latency
        ? el(
          "div",
          { class: "bars" },
          LATENCY_BARS.filter(([key]) => turn.latency[key] !== undefined).map(([key, label]) => [
            el("span", {}, label),
            el("span", {
              class: `bar ${key}`,
              style: `width:${(100 * turn.latency[key] / max).toFixed(1)}%`,
              "data-latency": key,
            }),
            el("span", {}, `${Math.round(turn.latency[key])} ms`),
          ]),
        )
        : null,
    ),
  );
}

function onMessage(ctx, data) {
  if (data instanceof ArrayBuffer) return play(ctx, data);
  const message = JSON.parse(data);
  switch (message.type) {
    case "started":
      player.rate = message.output.sample_rate;
      $("status").textContent = `in a call (${message.call_id})`;
      break;
    case "mark":
      player.marks.push({ name: message.name, at: player.next });
      break;
    case "clear":
      clearPlayback(ctx);
      break;
    case "transcript":
      if (!message.final) stats.interims++;
      $("interim").textContent = message.final ? "" : message.text;
      break;
    case "turn":
      if (message.role === "user") $("interim").textContent = "";
      addTurn(message);
      break;
    case "ended":
      $("status").textContent = `call ended: ${message.reason}`;
      break;
    case "error":
      $("status").textContent = `error: ${message.message}`;
      break;
  }
}

async function start() {
  const data = customData();
  if (data === undefined) return;
  $("start").disabled = true;
  $("turns").replaceChildren();
  $("status").textContent = "starting…";
  try {
    const ctx = new AudioContext({ sampleRate: CAPTURE_RATE });
    await ctx.audioWorklet.addModule("/playground/capture_worklet.js");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/playground/ws`);
    socket.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error("the WebSocket did not open"));
    });
    socket.send(JSON.stringify({
      type: "start",
      token: $("token").value || undefined,
      custom_data: data,
      system_prompt: $("system-prompt").value || undefined,
      greeting: $("greeting").value || undefined,
      first_speaker: $("first-speaker").value,
    }));
    // The microphone opens once the call is up, so no word is lost while it connects.
    const microphone = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    }).catch((error) => {
      socket.close(1000, "no microphone");
      throw error;
    });
    const capture = new AudioWorkletNode(ctx, "capture");
    capture.port.onmessage = (event) => {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(event.data);
        stats.framesSent++;
      }
    };
    const source = ctx.createMediaStreamSource(microphone);
    source.connect(capture);
    const markTimer = setInterval(() => reportPlayedMarks(ctx, socket), MARK_CHECK_MS);
    socket.onmessage = (event) => onMessage(ctx, event.data);
    socket.onclose = (event) => {
      clearInterval(markTimer);
      source.disconnect();
      capture.port.onmessage = null;
      for (const track of microphone.getTracks()) track.stop();
      clearPlayback(ctx);
      ctx.close();
      if (!$("status").textContent.startsWith("call ended")) {
        $("status").textContent = `disconnected${event.reason ? `: ${event.reason}` : ""}`;
      }
      $("start").disabled = false;
      $("stop").disabled = true;
      call = null;
    };
    call = { socket };
    $("stop").disabled = false;
  } catch (error) {
    $("status").textContent = `could not start: ${error.message}`;
    $("start").disabled = false;
  }
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", () => {
  call?.socket.send(JSON.stringify({ type: "stop" }));
});
