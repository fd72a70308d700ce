/**
 * What warming the connection to OpenAI at a call's start is worth: the time from sending an
 * answer's request to its first token, on a connection opened for it (cold) and on one a
 * warm-up opened (`createLlmWarmer`, as each call's start does). The real SDK against the
 * loopback fake, over TLS and HTTP/2 as to api.openai.com; each round starts a fresh fake, so
 * a fresh origin, since `fetch` keeps one connection per origin.
 *
 * On loopback the difference is the TCP and TLS handshakes alone; over the internet add the round
 * trips those take (and DNS) to OpenAI.
 *
 * Run: `deno run -A --cert tests/fakes/tls/ca.pem bench/llm_warmup.ts [--rounds 30]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createChatStreamer, createLlmWarmer } from "../src/services/llm.ts";
import { percentile } from "../src/session/call_metrics.ts";
import { startFakeOpenAi } from "../tests/fakes/openai.ts";

const { values } = parseArgs({ args: Deno.args, options: { rounds: { type: "string" } } });
const rounds = Number(values.rounds ?? 30);

async function firstTokenMs(warmed: boolean): Promise<number> {
  const fake = startFakeOpenAi({ whenQueueEmpty: () => ({ kind: "text", text: "Sure." }) });
  try {
    const options = { apiKey: fake.apiKey, baseURL: fake.baseURL };
    const signal = new AbortController().signal;
    if (warmed && await createLlmWarmer(options)(signal) !== "warmed") {
      throw new Error("the warm-up failed");
    }
    const messages = [{ role: "user" as const, content: "Hello?" }];
    for await (const event of createChatStreamer(options)({ messages }, signal)) {
      if (event.type === "first_token") return event.ms;
    }
    throw new Error("no first token");
  } finally {
    await fake.close();
  }
}

const cold: number[] = [];
const warm: number[] = [];
await firstTokenMs(false); // the SDK's and the fake's code warmed up, not counted
for (let i = 0; i < rounds; i++) {
  cold.push(await firstTokenMs(false));
  warm.push(await firstTokenMs(true));
}
const row = (label: string, ms: number[]) =>
  `| ${label} | ${ms.length} | ${percentile(ms, 50)?.toFixed(2)} | ${
    percentile(ms, 95)?.toFixed(2)
  } |`;
console.log("| OpenAI request → first token, loopback fake | n | p50 ms | p95 ms |");
console.log("|---|---|---|---|");
console.log(row("connection opened for the request", cold));
console.log(row("connection opened by the call's warm-up", warm));
