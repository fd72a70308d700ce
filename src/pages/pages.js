// What the browser pages' scripts share: element lookup, element building, and the latency bars
// both pages draw. Served at /pages/pages.js; the pages import it as an ES module.

/** The per-turn latencies the pages draw as bars, in order, with their labels. */
export const LATENCY_BARS = [
  ["sttFinalizationMs", "STT final"],
  ["llmTtftMs", "LLM first token"],
  ["ttsTtfbMs", "TTS first audio"],
  ["voiceToVoiceMs", "voice to voice"],
];

/** The page's element with this id. */
export const $ = (id) => document.getElementById(id);

/**
 * A new element: `class` sets its class name, `on…` attributes become event listeners, the rest
 * are attributes. Children are flattened; null and undefined ones are dropped, and anything that
 * is not a node becomes text.
 */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}
