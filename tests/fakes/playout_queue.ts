/**
 * Telnyx's queue of bot audio on the callee's side, shared by the fake media client (real time)
 * and the playback model (test clock): audio plays in arrival order, a mark echoes once the
 * audio before it has played, `clear` drops the audio and still echoes the queued marks.
 *
 * @module
 */

type Item = { kind: "audio"; bytes: number } | { kind: "mark"; name: string };

/** What Telnyx holds of a stream's bot audio and marks; the owner decides how time passes. */
export class PlayoutQueue {
  readonly #items: Item[] = [];
  /** Bytes of bot audio that have played. */
  playedBytes = 0;

  /** `echo` is called with each mark's name when Telnyx would echo it. */
  constructor(readonly echo: (name: string) => void) {}

  /** True when nothing is queued. */
  get empty(): boolean {
    return this.#items.length === 0;
  }

  /** Bytes of audio queued and not played yet. */
  get queuedBytes(): number {
    let bytes = 0;
    for (const item of this.#items) if (item.kind === "audio") bytes += item.bytes;
    return bytes;
  }

  audio(bytes: number): void {
    this.#items.push({ kind: "audio", bytes });
  }

  mark(name: string): void {
    this.#items.push({ kind: "mark", name });
    this.#echoLeadingMarks();
  }

  /** Drops the queued audio; its marks are still echoed, as Telnyx does. */
  clear(): void {
    for (const item of this.#items.splice(0)) {
      if (item.kind === "mark") this.echo(item.name);
    }
  }

  /** Plays up to `budget` bytes, echoing the marks it reaches. */
  play(budget: number): void {
    while (budget > 0 && this.#items.length > 0) {
      const head = this.#items[0];
      if (head.kind === "mark") {
        this.#items.shift();
        this.echo(head.name);
        continue;
      }
      const take = Math.min(budget, head.bytes);
      head.bytes -= take;
      budget -= take;
      this.playedBytes += take;
      if (head.bytes === 0) this.#items.shift();
    }
    this.#echoLeadingMarks();
  }

  #echoLeadingMarks(): void {
    while (this.#items[0]?.kind === "mark") {
      const mark = this.#items.shift() as { kind: "mark"; name: string };
      this.echo(mark.name);
    }
  }
}
