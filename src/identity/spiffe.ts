/**
 * SPIFFE IDs per the SPIFFE-ID standard (spiffe/spiffe standards/SPIFFE-ID.md), and the
 * caller patterns policies use. Hand-written character checks: this runs on every request,
 * and patterns must never become regular expressions built from policy text.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

export interface SpiffeId {
  readonly id: string;
  readonly trustDomain: string;
  /** '' or starting with '/'. */
  readonly path: string;
}

const SCHEME = 'spiffe://';
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN = 255;

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

export function parseSpiffeId(input: string): Parsed<SpiffeId> {
  if (typeof input !== 'string' || input.length === 0) return fail('SPIFFE ID is empty');
  // Every valid character is ASCII, so length in UTF-16 units bounds the byte length from below.
  if (input.length > MAX_ID_BYTES || Buffer.byteLength(input, 'utf8') > MAX_ID_BYTES) {
    return fail('SPIFFE ID is longer than 2048 bytes');
  }
  if (!input.startsWith(SCHEME)) return fail('SPIFFE ID must start with spiffe:// (lower-case scheme)');

  let i = SCHEME.length;
  const tdStart = i;
  for (; i < input.length; i++) {
    const c = input.charCodeAt(i);
    if (c === 0x2f) break;
    if (!isTrustDomainChar(c)) {
      if (c >= 0x41 && c <= 0x5a) return fail('SPIFFE ID trust domain must be lower-case');
      if (c === 0x3a) return fail('SPIFFE ID trust domain must not have a port');
      if (c === 0x40) return fail('SPIFFE ID must not have user info');
      if (c === 0x3f || c === 0x23) return fail('SPIFFE ID must not have a query or fragment');
      if (c === 0x25) return fail('SPIFFE ID must not be percent-encoded');
      return fail('SPIFFE ID trust domain contains an invalid character');
    }
  }
  const trustDomain = input.slice(tdStart, i);
  if (trustDomain.length === 0) return fail('SPIFFE ID trust domain is empty');
  if (trustDomain.length > MAX_TRUST_DOMAIN) return fail('SPIFFE ID trust domain is longer than 255 characters');

  const path = input.slice(i);
  const pathError = checkPath(path);
  if (pathError !== undefined) return fail(pathError);
  return { ok: true, value: { id: input, trustDomain, path } };
}

/** '' is valid (a trust domain ID); otherwise '/'-separated non-empty segments. */
function checkPath(path: string): string | undefined {
  if (path.length === 0) return undefined;
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const len = i - segStart;
      if (len === 0) return i === path.length ? 'SPIFFE ID path must not end with a slash' : 'SPIFFE ID path has an empty segment';
      if (path.charCodeAt(segStart) === 0x2e && (len === 1 || (len === 2 && path.charCodeAt(segStart + 1) === 0x2e))) {
        return "SPIFFE ID path segment is '.' or '..'";
      }
      segStart = i + 1;
    } else if (!isPathChar(c)) {
      if (c === 0x3f || c === 0x23) return 'SPIFFE ID must not have a query or fragment';
      if (c === 0x25) return 'SPIFFE ID must not be percent-encoded';
      return 'SPIFFE ID path contains an invalid character';
    }
  }
  return undefined;
}

export interface SpiffePattern {
  readonly source: string;
  readonly trustDomain: string;
  matches(id: SpiffeId): boolean;
}

/**
 * `spiffe://td/a/b` exact; `spiffe://td/a/*` one more segment; `spiffe://td/a/**` the prefix
 * itself and any number of further segments. Compiled at load; matching compares strings
 * and counts slashes, no allocation.
 */
export function compileSpiffePattern(pattern: string): Parsed<SpiffePattern> {
  if (typeof pattern !== 'string' || pattern.length === 0) return fail('caller pattern is empty');
  const clipped = pattern.length > 64 ? `${pattern.slice(0, 64)}…` : pattern;
  let kind: 'exact' | 'one' | 'any' = 'exact';
  let base = pattern;
  if (pattern.endsWith('/**')) {
    kind = 'any';
    base = pattern.slice(0, -3);
  } else if (pattern.endsWith('/*')) {
    kind = 'one';
    base = pattern.slice(0, -2);
  }
  if (base.includes('*')) {
    return fail(`'${clipped}': a wildcard may only end a pattern, as '/*' (one segment) or '/**' (any depth)`);
  }
  const parsed = parseSpiffeId(base);
  if (!parsed.ok) return fail(`'${clipped}': ${parsed.error}`);
  const { id: prefix, trustDomain } = parsed.value;
  const prefixSlash = `${prefix}/`;

  switch (kind) {
    case 'exact':
      return { ok: true, value: { source: pattern, trustDomain, matches: (id) => id.id === prefix } };
    case 'any':
      return {
        ok: true,
        value: { source: pattern, trustDomain, matches: (id) => id.id === prefix || id.id.startsWith(prefixSlash) },
      };
    case 'one':
      return {
        ok: true,
        value: {
          source: pattern,
          trustDomain,
          // The rest after `prefix/` is one non-empty segment: no further slash. IDs are
          // already valid, so an empty segment cannot occur.
          matches: (id) => id.id.length > prefixSlash.length && id.id.startsWith(prefixSlash) && id.id.indexOf('/', prefixSlash.length) === -1,
        },
      };
  }
}
