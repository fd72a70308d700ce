/**
 * TeXML documents the app returns when Telnyx fetches a call's instructions (`/answer`).
 *
 * The documents are assembled as strings rather than with an XML library because they are tiny and
 * fixed; the one dynamic part, attribute values, always goes through {@link escapeXmlAttribute}.
 *
 * @module
 */

/** Audio codecs we accept for the bidirectional RTP leg; both are 8 kHz G.711 on the wire. */
export type BidirectionalCodec = "PCMU" | "PCMA";

/** Options for {@link buildStreamTeXml}. */
export interface StreamTeXmlOptions {
  /** `wss://` URL Telnyx connects its media WebSocket to; usually carries a session token. */
  streamUrl: string;
  /**
   * Seconds of `<Pause>` after `<Connect>` ends. `<Connect><Stream>` blocks while the socket lives,
   * so the pause only runs once the stream closed; it keeps the call up long enough for the app to
   * hang it up deliberately instead of the TeXML flow falling off the end. Defaults to 40.
   */
  pauseSeconds?: number;
  /** Codec Telnyx should expect on the audio we send back. Defaults to `"PCMU"`. */
  bidirectionalCodec?: BidirectionalCodec;
}

const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';
const DEFAULT_PAUSE_SECONDS = 40;

/**
 * Anything outside the XML 1.0 `Char` production: C0 controls other than TAB/LF/CR, U+FFFE, U+FFFF
 * and (thanks to the `u` flag matching unpaired surrogates as single code points) lone surrogates.
 */
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/** Characters that must not appear literally inside a double- or single-quoted attribute value. */
const ATTRIBUTE_SPECIAL = /[&<>"'\t\n\r\u0085\u2028\u2029]/g;

// TAB/LF/CR become character references because attribute-value normalisation would otherwise turn
// them into spaces, silently changing the URL Telnyx dials back. NEL and LINE SEPARATOR (XML 1.1
// line ends) and PARAGRAPH SEPARATOR are normalised by some parsers too (xmldom does all three); a
// character reference is never normalised, whatever the parser.
const ATTRIBUTE_REPLACEMENT: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
  "\t": "&#9;",
  "\n": "&#10;",
  "\r": "&#13;",
  "\u0085": "&#133;",
  "\u2028": "&#8232;",
  "\u2029": "&#8233;",
};

/**
 * Escapes `value` for use inside a quoted XML attribute so that a parser reads back exactly
 * `value`: `& < > " '` become entities, and TAB, LF, CR, NEL, U+2028 and U+2029 become character
 * references so whitespace normalisation cannot alter them.
 *
 * @throws {TypeError} if `value` contains a character XML 1.0 cannot represent at all (C0
 * controls other than tab/LF/CR, U+FFFE, U+FFFF, lone surrogates); no escape makes those legal, so
 * emitting them would only produce a document Telnyx rejects.
 */
export function escapeXmlAttribute(value: string): string {
  const invalid = NOT_XML_CHAR.exec(value);
  if (invalid !== null) {
    const codePoint = invalid[0].codePointAt(0) ?? 0;
    const hex = codePoint.toString(16).toUpperCase().padStart(4, "0");
    // The value itself is left out of the message: stream URLs carry session tokens.
    throw new TypeError(
      `XML attribute value contains U+${hex} at index ${invalid.index}, which XML 1.0 forbids`,
    );
  }
  return value.replace(ATTRIBUTE_SPECIAL, (char) => ATTRIBUTE_REPLACEMENT[char]);
}

/**
 * Builds the TeXML that bridges the answered call to our media WebSocket in bidirectional RTP mode
 * (the default mp3 mode only plays whole MP3 files, at most one per second).
 *
 * @throws {TypeError} if `streamUrl` holds characters XML cannot carry, or the codec is unknown.
 * @throws {RangeError} if `pauseSeconds` is not a non-negative integer.
 */
export function buildStreamTeXml(opts: StreamTeXmlOptions): string {
  const pauseSeconds = opts.pauseSeconds ?? DEFAULT_PAUSE_SECONDS;
  if (!Number.isSafeInteger(pauseSeconds) || pauseSeconds < 0) {
    throw new RangeError(`pauseSeconds must be a non-negative integer, got ${pauseSeconds}`);
  }
  const codec = opts.bidirectionalCodec ?? "PCMU";
  // Callers outside the type checker (config, JSON) could pass anything; the sampling rate below
  // is only right for the G.711 pair.
  if (codec !== "PCMU" && codec !== "PCMA") {
    throw new TypeError(`bidirectionalCodec must be "PCMU" or "PCMA", got ${String(codec)}`);
  }
  const streamAttributes = [
    `url="${escapeXmlAttribute(opts.streamUrl)}"`,
    `bidirectionalMode="rtp"`,
    `bidirectionalCodec="${escapeXmlAttribute(codec)}"`,
    `bidirectionalSamplingRate="8000"`,
  ].join(" ");
  return `${XML_DECLARATION}
<Response>
  <Connect>
    <Stream ${streamAttributes}/>
  </Connect>
  <Pause length="${escapeXmlAttribute(String(pauseSeconds))}"/>
</Response>
`;
}

/**
 * Builds the TeXML that ends the call at once; `/answer` returns it for an instruction fetch we
 * cannot attribute to a call we placed.
 */
export function buildHangupTeXml(): string {
  return `${XML_DECLARATION}\n<Response><Hangup/></Response>\n`;
}
