/**
 * Turns a stream of LLM text deltas into speakable phrases, so TTS can start on the first
 * sentence while the rest of the answer is still being generated, yet never receives fragments
 * like "Hel" that would make it guess the prosody of half a word. The voice agent pushes each LLM
 * delta through a {@link PhraseChunker} and hands the phrases to `CartesiaSpeaker.speak()`, which
 * marks where each phrase's audio ends so barge-in can tell which phrases the callee heard.
 *
 * @module
 */

/** Tuning of {@link PhraseChunker}. */
export interface PhraseChunkerOptions {
  /**
   * A clause boundary (`,` `;` `:` dash) only ends a phrase once the phrase is at least this long;
   * shorter pieces ("Well, ") sound choppy when synthesised alone.
   */
  minClauseChars?: number;
  /** A phrase without any boundary is cut at its last space once it grows past this. */
  maxChars?: number;
}

// Sentence end (optionally followed by closing quotes/brackets) or clause mark, then whitespace;
// or a line break. Requiring the whitespace keeps "3.5" and "e.g.," together.
const BOUNDARY = /([.!?…]+["'”’)\]]*)\s|([,;:–—])\s|\n/g;

/** Accumulates deltas and releases complete phrases, each keeping its trailing space. */
export class PhraseChunker {
  readonly #minClauseChars: number;
  readonly #maxChars: number;
  #buffer = "";

  /** Creates an empty chunker. */
  constructor(options: PhraseChunkerOptions = {}) {
    this.#minClauseChars = options.minClauseChars ?? 24;
    this.#maxChars = options.maxChars ?? 160;
  }

  /** Adds a delta; returns the phrases it completed (often none). */
  push(delta: string): string[] {
    this.#buffer += delta;
    const phrases: string[] = [];
    for (;;) {
      const end = this.#nextPhraseEnd();
      if (end === undefined) break;
      phrases.push(this.#buffer.slice(0, end));
      this.#buffer = this.#buffer.slice(end);
    }
    return phrases;
  }

  /** Returns whatever is left at the end of the stream ("" when nothing is). */
  flush(): string {
    const rest = this.#buffer;
    this.#buffer = "";
    return rest.trim() === "" ? "" : rest;
  }

  #nextPhraseEnd(): number | undefined {
    BOUNDARY.lastIndex = 0;
    for (let match = BOUNDARY.exec(this.#buffer); match; match = BOUNDARY.exec(this.#buffer)) {
      const end = match.index + match[0].length;
      if (this.#buffer.slice(0, end).trim() === "") continue; // leading blank line: not a phrase
      if (match[2] !== undefined && end < this.#minClauseChars) continue;
      return end;
    }
    if (this.#buffer.length > this.#maxChars) {
      const lastSpace = this.#buffer.lastIndexOf(" ", this.#maxChars);
      if (lastSpace > 0) return lastSpace + 1;
    }
    return undefined;
  }
}
