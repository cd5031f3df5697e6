/**
 * A JSON string literal for `s`, as JSON.stringify writes it. Most audit values (IDs, hosts,
 * paths) need no escaping, and scanning for the few characters that do is several times
 * cheaper than the generic serializer.
 */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // Control characters, '"', '\\', and surrogates (a lone one must be escaped).
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return `"${s}"`;
}

/** `jsonString`, or `null` for a missing value. */
export function jsonStringOrNull(s: string | undefined | null): string {
  return s === undefined || s === null ? 'null' : jsonString(s);
}

/** A JSON number, `null` where JSON.stringify would write it (NaN, ±Infinity). */
export function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}
