import type { Parsed } from './spiffe';

/** One XFCC element: what one proxy hop recorded about its client's certificate. */
export interface XfccElement {
  by: string[];
  hash?: string;
  /** URL-encoded PEM, as sent. */
  cert?: string;
  /** URL-encoded PEM chain, as sent. */
  chain?: string;
  subject?: string;
  uri: string[];
  dns: string[];
}

export const MAX_XFCC_LENGTH = 64 * 1024;

type SingleKey = 'hash' | 'cert' | 'chain' | 'subject';

/**
 * Parses `x-forwarded-client-cert`: `,`-separated elements of `;`-separated `key=value`
 * pairs; values may be double-quoted (then `,` `;` `=` are literal and `\"`, `\\` escape).
 * Keys are case-insensitive; unknown keys are skipped. Never throws.
 */
export function parseXfcc(header: string): Parsed<XfccElement[]> {
  if (typeof header !== 'string' || header.trim() === '') return { ok: false, error: 'header is empty' };
  if (header.length > MAX_XFCC_LENGTH) return { ok: false, error: `header is longer than ${MAX_XFCC_LENGTH} bytes` };

  const elements: XfccElement[] = [];
  let element: XfccElement = newElement();
  let pairs = 0;
  let i = 0;
  const n = header.length;

  while (i <= n) {
    i = skipSpaces(header, i);
    // Key up to '='.
    const keyStart = i;
    while (i < n && header[i] !== '=' && header[i] !== ';' && header[i] !== ',') i++;
    const key = header.slice(keyStart, i).trim().toLowerCase();
    if (i >= n || header[i] !== '=') {
      if (key === '' && pairs === 0) return { ok: false, error: 'empty element' };
      return { ok: false, error: key === '' ? 'empty pair' : `pair '${clip(key)}' has no '='` };
    }
    if (key === '') return { ok: false, error: 'pair has an empty key' };
    i++; // '='

    // Value: quoted or bare.
    let value: string;
    i = skipSpaces(header, i);
    if (header[i] === '"') {
      let out = '';
      i++;
      let closed = false;
      while (i < n) {
        const ch = header[i]!;
        if (ch === '\\' && i + 1 < n) {
          out += header[i + 1];
          i += 2;
        } else if (ch === '"') {
          closed = true;
          i++;
          break;
        } else {
          out += ch;
          i++;
        }
      }
      if (!closed) return { ok: false, error: 'unterminated quoted value' };
      value = out;
      i = skipSpaces(header, i);
      if (i < n && header[i] !== ';' && header[i] !== ',') return { ok: false, error: 'unexpected text after a quoted value' };
    } else {
      const valueStart = i;
      while (i < n && header[i] !== ';' && header[i] !== ',') i++;
      value = header.slice(valueStart, i).trim();
    }

    const error = addPair(element, key, value);
    if (error) return { ok: false, error };
    pairs++;

    if (i >= n) {
      elements.push(element);
      break;
    }
    if (header[i] === ',') {
      elements.push(element);
      element = newElement();
      pairs = 0;
    }
    i++; // ';' or ','
    if (i >= n) return { ok: false, error: header[i - 1] === ',' ? 'empty element' : 'empty pair' };
  }
  return { ok: true, value: elements };
}

/** The element written by the proxy nearest to us (the last one); the only one we may trust. */
export function nearestXfccElement(header: string): Parsed<XfccElement> {
  const parsed = parseXfcc(header);
  if (!parsed.ok) return parsed;
  return { ok: true, value: parsed.value[parsed.value.length - 1]! };
}

function newElement(): XfccElement {
  return { by: [], uri: [], dns: [] };
}

function addPair(element: XfccElement, key: string, value: string): string | undefined {
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
    case 'subject': {
      const k = key as SingleKey;
      if (element[k] !== undefined) return `duplicate ${key} in one element`;
      element[k] = value;
      return undefined;
    }
    default:
      return undefined; // forward compatible: keys Envoy may add later
  }
}

function skipSpaces(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  return i;
}

function clip(s: string): string {
  return s.length > 32 ? `${s.slice(0, 32)}…` : s;
}
