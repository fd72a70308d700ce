/**
 * Structured logging: JSON lines in production (for log shippers), one readable line locally.
 *
 * Every call-scoped logger carries the call id so a whole call can be grepped out of a busy
 * server. Secrets are redacted, phone numbers masked and control characters escaped here, at the
 * single exit point, so no caller can forget (and no value from a peer can forge a line).
 *
 * @module
 */

/**
 * A phone number in E.164 form (`+` and 7 or more digits), also URL-encoded (`%2B`). Longer runs
 * than E.164 allows are masked too: what matters is that no number gets through whole.
 */
const PHONE_NUMBER = /(\+|%2[Bb])(\d{3})\d{2,}(\d{2})/g;

/**
 * Masks every phone number in `text`, keeping enough to tell calls apart: `+15551234567` becomes
 * `+155…67`. Text without a number comes back unchanged, so it is safe to apply twice.
 */
export function maskPhoneNumbers(text: string): string {
  return text.replace(PHONE_NUMBER, "$1$2…$3");
}

/**
 * Characters that end or rewrite a line on a terminal or in a log viewer: C0 controls, DEL, C1
 * controls (NEL among them) and the Unicode line and paragraph separators.
 */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

const CONTROL_ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** `\n`, `\r` and `\t` as such, any other control character as `\uXXXX`. */
function escapeControlCharacters(text: string): string {
  return text.replace(
    CONTROL_CHARACTERS,
    (char) => CONTROL_ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** Fields attached to a log line. */
export type LogFields = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Where lines go; tests capture them. */
export type LogSink = (line: string, level: LogLevel) => void;

const consoleSink: LogSink = (line, level) => {
  if (level === "error" || level === "warn") console.error(line);
  else console.log(line);
};

/** Options for {@link Logger}. */
export interface LoggerOptions {
  level: LogLevel;
  format: "json" | "pretty";
  /** Values that must never appear in a log line (API keys, tokens). */
  secrets?: readonly (string | undefined)[];
  sink?: LogSink;
}

/** A logger bound to a set of context fields. */
export class Logger {
  readonly #min: number;
  readonly #secrets: string[];

  constructor(
    private readonly options: LoggerOptions,
    private readonly context: LogFields = {},
  ) {
    this.#min = LEVELS[options.level];
    // Short values would redact innocent text; real keys are long. Each secret is also matched
    // in its JSON-escaped form (a `"` or `\\` in a token is escaped by JSON.stringify), and the
    // longest go first so one secret that prefixes another cannot leave the other's tail behind.
    this.#secrets = [
      ...new Set(
        (options.secrets ?? [])
          .filter((s): s is string => !!s && s.length >= 8)
          .flatMap((s) => [s, JSON.stringify(s).slice(1, -1)]),
      ),
    ].sort((a, b) => b.length - a.length);
  }

  /** A logger whose lines all carry `fields` (e.g. `{ call: id }`). */
  child(fields: LogFields): Logger {
    return new Logger(this.options, { ...this.context, ...fields });
  }

  /** True when lines at `level` are written; guards building expensive fields. */
  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= this.#min;
  }

  debug(msg: string, fields?: LogFields): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#write("error", msg, fields);
  }

  #write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const all = { ...this.context, ...fields };
    let line: string;
    if (this.options.format === "json") {
      // Core keys last, so a field can never pass itself off as the level or message.
      line = JSON.stringify({ ...all, time: new Date().toISOString(), level, msg }, errorReplacer);
      // JSON.stringify escapes C0 controls; these two it leaves raw, and some readers split on them.
      line = line.replaceAll("\u2028", "\\u2028").replaceAll("\u2029", "\\u2029");
    } else {
      const extra = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v, errorReplacer)}`)
        .join(" ");
      const time = new Date().toISOString().slice(11, 23);
      line = `${time} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? ` ${extra}` : ""}`;
    }
    for (const secret of this.#secrets) line = line.replaceAll(secret, "[redacted]");
    line = maskPhoneNumbers(line);
    // Only values carry control characters (the layout uses spaces): a CallSid with a newline in
    // it must not start a line of its own.
    if (this.options.format === "pretty") line = escapeControlCharacters(line);
    (this.options.sink ?? consoleSink)(line, level);
  }
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}
