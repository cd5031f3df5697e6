import type { Parsed } from './spiffe';

/**
 * `x-forwarded-client-cert` (Envoy, configuration/http/http_conn_man/headers.rst).
 *
 * The value is a `,`-separated list of elements, one per proxy hop, the nearest proxy's LAST.
 * Each element is `;`-separated `key=value` pairs; keys are case-insensitive, values are not.
 * A value may be double-quoted, and may then hold `,` `;` `=`, with `\"` for a quote and `\\`
 * for a backslash (any other backslash is kept as written, so RFC 2253 subjects such as
 * `CN=a\, b` survive). A single-pass character scanner, no regular expressions: this runs on
 * every request. Anything that does not parse cleanly is an error, never a best guess.
 */

/** One XFCC element: what one proxy hop recorded about its client's certificate. */
export interface XfccElement {
  /** SANs of the proxy that wrote this element (`By`, repeatable). */
  by: string[];
  /** SHA-256 of the client certificate, hex. */
  hash?: string;
  /** URL-encoded PEM, as sent (not decoded). */
  cert?: string;
  /** URL-encoded PEM chain, as sent (not decoded). */
  chain?: string;
  subject?: string;
  /** URI SANs of the client certificate (`URI`, repeatable; `URI=` adds nothing). */
  uri: string[];
  /** DNS SANs of the client certificate (`DNS`, repeatable; `DNS=` adds nothing). */
  dns: string[];
}

/** Longer headers are refused without being parsed. */
export const MAX_XFCC_LENGTH = 64 * 1024;

const COMMA = 0x2c;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = 0x20;
const TAB = 0x09;

type Key = 'by' | 'hash' | 'cert' | 'chain' | 'subject' | 'uri' | 'dns' | undefined;

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}

function isOws(c: number): boolean {
  return c === SPACE || c === TAB;
}

/** Control characters (other than tab) never appear in a header Envoy wrote. */
function isControl(c: number): boolean {
  return (c < 0x20 && c !== TAB) || c === 0x7f;
}

/** Keys: letters, digits, '-', '_', '.'. Envoy's are all letters; the rest allows future keys. */
function isKeyChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === 0x5f ||
    c === 0x2e
  );
}

/** Parses the whole header into its elements, farthest hop first. Never throws. */
export function parseXfcc(header: string): Parsed<XfccElement[]> {
  if (typeof header !== 'string') return fail('header is not a string');
  const n = header.length;
  if (
    n > MAX_XFCC_LENGTH ||
    (n > MAX_XFCC_LENGTH / 3 && Buffer.byteLength(header, 'utf8') > MAX_XFCC_LENGTH)
  ) {
    return fail(`header is longer than ${MAX_XFCC_LENGTH} bytes`);
  }
  let i = skipOws(header, 0);
  if (i === n) return fail('header is empty');

  const elements: XfccElement[] = [];
  let element = newElement();
  let pairs = 0; // pairs in the current element

  for (;;) {
    // Key.
    i = skipOws(header, i);
    const keyStart = i;
    while (i < n && isKeyChar(header.charCodeAt(i))) i++;
    const keyEnd = i;
    i = skipOws(header, i);
    const c = i < n ? header.charCodeAt(i) : -1;
    if (c !== EQUALS) {
      if (keyEnd === keyStart) {
        if (c === -1 || c === COMMA)
          return fail(pairs === 0 ? `empty element at offset ${i}` : `empty pair at offset ${i}`);
        if (c === SEMICOLON) return fail(`empty pair at offset ${i}`);
        return fail(`invalid character in a key at offset ${i}`);
      }
      if (c === -1 || c === COMMA || c === SEMICOLON)
        return fail(`pair '${clip(header, keyStart, keyEnd)}' has no '='`);
      return fail(`invalid character in a key at offset ${i}`);
    }
    if (keyEnd === keyStart) return fail(`pair has an empty key at offset ${i}`);
    i = skipOws(header, i + 1); // past '='

    // Value: quoted or bare.
    let value: string;
    if (i < n && header.charCodeAt(i) === QUOTE) {
      const quoteAt = i;
      i++;
      let out = '';
      let runStart = i;
      let closed = false;
      while (i < n) {
        const v = header.charCodeAt(i);
        if (v === QUOTE) {
          closed = true;
          break;
        }
        if (v === BACKSLASH && i + 1 < n) {
          const next = header.charCodeAt(i + 1);
          if (next === QUOTE || next === BACKSLASH) {
            out += header.slice(runStart, i);
            runStart = i + 1; // keep the escaped character, drop the backslash
            i += 2;
            continue;
          }
        }
        if (isControl(v)) return fail(`control character in a value at offset ${i}`);
        i++;
      }
      if (!closed) return fail(`unterminated quoted value starting at offset ${quoteAt}`);
      value = out + header.slice(runStart, i);
      i = skipOws(header, i + 1); // past the closing quote
      if (i < n) {
        const after = header.charCodeAt(i);
        if (after !== SEMICOLON && after !== COMMA)
          return fail(`unexpected text after a quoted value at offset ${i}`);
      }
    } else {
      const valueStart = i;
      let valueEnd = i; // exclusive, trailing whitespace trimmed
      while (i < n) {
        const v = header.charCodeAt(i);
        if (v === SEMICOLON || v === COMMA) break;
        if (v === QUOTE) return fail(`unexpected '"' inside an unquoted value at offset ${i}`);
        if (isControl(v)) return fail(`control character in a value at offset ${i}`);
        i++;
        if (!isOws(v)) valueEnd = i;
      }
      value = header.slice(valueStart, valueEnd);
    }

    const error = addPair(element, keyOf(header, keyStart, keyEnd), value);
    if (error !== undefined) return fail(error);
    pairs++;

    if (i >= n) {
      elements.push(element);
      return { ok: true, value: elements };
    }
    const separator = header.charCodeAt(i);
    i++;
    if (separator === COMMA) {
      elements.push(element);
      element = newElement();
      pairs = 0;
      if (skipOws(header, i) >= n) return fail(`empty element at offset ${i}`);
    } else if (skipOws(header, i) >= n) {
      return fail(`empty pair at offset ${i}`);
    }
  }
}

/** The element written by the proxy nearest to us (the last one); the only one we may trust. */
export function nearestXfccElement(header: string): Parsed<XfccElement> {
  // The whole header must parse: a header that does not is rejected, not half-read.
  const parsed = parseXfcc(header);
  if (!parsed.ok) return parsed;
  return { ok: true, value: parsed.value[parsed.value.length - 1]! };
}

function newElement(): XfccElement {
  return { by: [], uri: [], dns: [] };
}

function addPair(element: XfccElement, key: Key, value: string): string | undefined {
  switch (key) {
    case 'by':
      if (value !== '') element.by.push(value);
      return undefined;
    case 'uri':
      if (value !== '') element.uri.push(value);
      return undefined;
    case 'dns':
      if (value !== '') element.dns.push(value);
      return undefined;
    case 'hash':
    case 'cert':
    case 'chain':
    case 'subject':
      if (element[key] !== undefined) return `duplicate ${key} in one element`;
      element[key] = value;
      return undefined;
    case undefined:
      return undefined; // forward compatible: keys Envoy may add later are ignored
  }
}

/** The known key spelled by `s[start, end)`, compared case-insensitively without allocating. */
function keyOf(s: string, start: number, end: number): Key {
  switch (end - start) {
    case 2:
      if (keyEquals(s, start, 'by')) return 'by';
      return undefined;
    case 3:
      if (keyEquals(s, start, 'uri')) return 'uri';
      if (keyEquals(s, start, 'dns')) return 'dns';
      return undefined;
    case 4:
      if (keyEquals(s, start, 'hash')) return 'hash';
      if (keyEquals(s, start, 'cert')) return 'cert';
      return undefined;
    case 5:
      if (keyEquals(s, start, 'chain')) return 'chain';
      return undefined;
    case 7:
      if (keyEquals(s, start, 'subject')) return 'subject';
      return undefined;
    default:
      return undefined;
  }
}

/** `lower` is lower-case letters; key characters are ASCII, so `| 0x20` folds only letters' case. */
function keyEquals(s: string, start: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) {
    const c = s.charCodeAt(start + k);
    if (c >= 0x41 && c <= 0x5a ? (c | 0x20) !== lower.charCodeAt(k) : c !== lower.charCodeAt(k))
      return false;
  }
  return true;
}

function skipOws(s: string, i: number): number {
  while (i < s.length && isOws(s.charCodeAt(i))) i++;
  return i;
}

/** Keys are made of key characters only, so echoing a clipped one is safe. */
function clip(s: string, start: number, end: number): string {
  return end - start > 32 ? `${s.slice(start, start + 32)}…` : s.slice(start, end);
}
