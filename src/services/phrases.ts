/**
 * Turns a stream of LLM text deltas into speakable phrases, so TTS can start on the first
 * sentence while the rest of the answer is still being generated, yet never receives fragments
 * like "Hel" that would make it guess the prosody of half a word. The voice agent pushes each LLM
 * delta through a {@link PhraseChunker} and hands the phrases to `CartesiaSpeaker.speak()`, which
 * marks where each phrase's audio ends so barge-in can tell which phrases the callee heard.
 *
 * With `startEarly`, the first phrase of an answer does not wait for its end: its first clause
 * (or first few words) goes out at once as a {@link PhraseStart}, and the rest of the phrase
 * follows clause by clause (or a few words at a time) in the same TTS context, so the first word
 * is heard sooner, the sentence still has one prosody, and TTS has the next words before the
 * audio of a short first clause has played.
 *
 * @module
 */

/**
 * The start of a phrase, to be spoken at once; the next string completes the phrase. TTS keeps
 * both in one breath (no boundary between them), and the phrase's mark covers both.
 */
export interface PhraseStart {
  start: string;
}

/** What a {@link PhraseChunker} releases: a whole phrase, or the start of one. */
export type PhrasePiece = string | PhraseStart;

/** Tuning of {@link PhraseChunker}. */
export interface PhraseChunkerOptions {
  /**
   * A clause boundary (`,` `;` `:` dash) only ends a phrase once the phrase is at least this long;
   * shorter pieces ("Well, ") sound choppy when synthesised alone.
   */
  minClauseChars?: number;
  /** A phrase without any boundary is cut at its last space once it grows past this. */
  maxChars?: number;
  /**
   * Release the first phrase in speakable pieces as it is generated: each clause, or each
   * {@link leadWords} words, whichever is complete first. Default false.
   */
  startEarly?: boolean;
  /** Words that make a speakable piece without a clause mark; default 4. */
  leadWords?: number;
}

// Sentence end (optionally followed by closing quotes/brackets) or clause mark, then whitespace;
// or a line break. Requiring the whitespace keeps "3.5" and "e.g.," together.
const BOUNDARY = /([.!?…]+["'”’)\]]*)\s|([,;:–—])\s|\n/g;
// A clause mark right after a word, at the end of the text so far or before whitespace. A mark
// after a letter cannot be part of a number ("1,000"); a full stop is left out ("Mr.", "e.g.").
const LEAD_CLAUSE = /\p{L}[,;:!?–—]+["'”’)\]]*(?:\s|$)/u;

/** Accumulates deltas and releases complete phrases, each keeping its trailing space. */
export class PhraseChunker {
  readonly #minClauseChars: number;
  readonly #maxChars: number;
  readonly #leadWords: RegExp | undefined;
  #buffer = "";
  /** No whole phrase has been released yet: only the first phrase goes out in pieces. */
  #inFirstPhrase = true;
  /** Characters of the current phrase already released as pieces; they count towards maxChars. */
  #releasedOfPhrase = 0;

  /** Creates an empty chunker. */
  constructor(options: PhraseChunkerOptions = {}) {
    this.#minClauseChars = options.minClauseChars ?? 24;
    this.#maxChars = options.maxChars ?? 160;
    this.#leadWords = options.startEarly
      ? new RegExp(`^\\s*(?:\\S+\\s+){${options.leadWords ?? 4}}`)
      : undefined;
  }

  /** Adds a delta; returns the phrases (or the first phrase's start) it completed, often none. */
  push(delta: string): PhrasePiece[] {
    this.#buffer += delta;
    const phrases: PhrasePiece[] = [];
    while (this.#leadWords && this.#inFirstPhrase && this.#nextPhraseEnd() === undefined) {
      const lead = this.#leadEnd(this.#leadWords);
      if (lead === undefined) break;
      phrases.push({ start: this.#buffer.slice(0, lead) });
      this.#buffer = this.#buffer.slice(lead);
      this.#releasedOfPhrase += lead;
    }
    for (;;) {
      const end = this.#nextPhraseEnd();
      if (end === undefined) break;
      phrases.push(this.#buffer.slice(0, end));
      this.#buffer = this.#buffer.slice(end);
      this.#inFirstPhrase = false;
      this.#releasedOfPhrase = 0;
    }
    return phrases;
  }

  /** Returns whatever is left at the end of the stream ("" when nothing is). */
  flush(): string {
    const rest = this.#buffer;
    this.#buffer = "";
    return rest.trim() === "" ? "" : rest;
  }

  /** End of the first speakable piece of the text so far: a clause, or enough whole words. */
  #leadEnd(leadWords: RegExp): number | undefined {
    if (this.#buffer.trim() === "") return undefined;
    const clause = LEAD_CLAUSE.exec(this.#buffer);
    const words = leadWords.exec(this.#buffer);
    const ends = [
      clause ? clause.index + clause[0].length : Infinity,
      words ? words[0].length : Infinity,
    ];
    const end = Math.min(...ends);
    return Number.isFinite(end) ? end : undefined;
  }

  #nextPhraseEnd(): number | undefined {
    BOUNDARY.lastIndex = 0;
    for (let match = BOUNDARY.exec(this.#buffer); match; match = BOUNDARY.exec(this.#buffer)) {
      const end = match.index + match[0].length;
      if (this.#buffer.slice(0, end).trim() === "") continue; // leading blank line: not a phrase
      if (match[2] !== undefined && end < this.#minClauseChars) continue;
      return end;
    }
    // A phrase ends at a mark or, too long without one, at a space: until it ends, the callee's
    // interruption cannot be placed within it.
    const room = this.#maxChars - this.#releasedOfPhrase;
    if (this.#buffer.length > room) {
      const space = room > 0 ? this.#buffer.lastIndexOf(" ", room) : this.#buffer.indexOf(" ", 1);
      if (space > 0) return space + 1;
    }
    return undefined;
  }
}
