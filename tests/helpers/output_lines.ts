/**
 * A child process's output as text lines: the benches and helpers read servers and receivers that
 * report one line at a time.
 *
 * @module
 */

/** `output` (a child's stdout or stderr) decoded and split into lines, without their "\n". */
export function outputLines(output: ReadableStream<Uint8Array>): ReadableStream<string> {
  let rest = "";
  return output.pipeThrough(new TextDecoderStream()).pipeThrough(
    new TransformStream<string, string>({
      transform(chunk, lines) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const line of parts) lines.enqueue(line);
      },
    }),
  );
}
