/**
 * Control characters, '"', '\\', surrogates (a lone one must be escaped) and the line breaks.
 * Without the `u` flag the class matches UTF-16 code units, so any surrogate half matches. An audit
 * record scans a dozen strings per check, and one compiled scan costs far less than a loop over
 * charCodeAt (bench/per-check.js).
 */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\u0085\u2028\u2029\ud800-\udfff]/;

/**
 * A JSON string literal for `s`, as JSON.stringify writes it but for the line breaks it leaves
 * raw (see escapeLineBreaks). Most audit values (IDs, hosts,
 * paths) need no escaping, and scanning for the few characters that do is several times
 * cheaper than the generic serializer.
 */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? escapeLineBreaks(JSON.stringify(s)) : `"${s}"`;
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
