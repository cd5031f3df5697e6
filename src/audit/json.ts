/**
 * A JSON string literal for `s`, as JSON.stringify writes it but for the line breaks it leaves
 * raw (see escapeLineBreaks). Most audit values (IDs, hosts,
 * paths) need no escaping, and scanning for the few characters that do is several times
 * cheaper than the generic serializer.
 */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // Control characters, '"', '\\', surrogates (a lone one must be escaped) and line breaks.
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff) || isLineBreak(c))
      return escapeLineBreaks(JSON.stringify(s));
  }
  return `"${s}"`;
}

/** NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR: JSON allows them raw, but line readers split records on them. */
function isLineBreak(c: number): boolean {
  return c === 0x85 || c === 0x2028 || c === 0x2029;
}

/** JSON text with the line breaks JSON.stringify leaves raw written as \u escapes, so one record stays one line. */
export function escapeLineBreaks(json: string): string {
  let out = '';
  let last = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (!isLineBreak(c)) continue;
    out += `${json.slice(last, i)}\\u${c.toString(16).padStart(4, '0')}`;
    last = i + 1;
  }
  return last === 0 ? json : out + json.slice(last);
}

/** `jsonString`, or `null` for a missing value. */
export function jsonStringOrNull(s: string | undefined | null): string {
  return s === undefined || s === null ? 'null' : jsonString(s);
}

/** A JSON number, `null` where JSON.stringify would write it (NaN, ±Infinity). */
export function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}
