/**
 * SPIFFE IDs per the SPIFFE-ID standard (spiffe/spiffe standards/SPIFFE-ID.md, as enforced by
 * go-spiffe's `spiffeid.FromString`), and the caller patterns policies use.
 *
 * Hand-written character checks, no regular expressions: IDs are parsed on every request, and
 * patterns must never become regular expressions built from policy text. Error messages never
 * echo the ID being parsed (inputs are hostile; logs must stay bounded); pattern errors, which
 * come from policy files, echo at most the first 64 characters of the pattern.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

export interface SpiffeId {
  /** The whole ID, `spiffe://` + trustDomain + path. */
  readonly id: string;
  readonly trustDomain: string;
  /** '' or starting with '/'. */
  readonly path: string;
}

const SCHEME = 'spiffe://';
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN = 255;
const MAX_ECHO = 64;

const SLASH = 0x2f;
const DOT = 0x2e;

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}

/** a-z 0-9 . - _ */
function isTrustDomainChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f
  );
}

/** a-z A-Z 0-9 . - _ */
function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f
  );
}

/** A precise reason for a character that is not allowed; shared by trust domain and path. */
function invalidCharacter(c: number, where: 'trust domain' | 'path'): string {
  if (c === 0x3f || c === 0x23) return 'SPIFFE ID must not have a query or fragment';
  if (c === 0x25) return 'SPIFFE ID must not be percent-encoded';
  return `SPIFFE ID ${where} contains invalid character`;
}

/**
 * Parses and validates a SPIFFE ID. A trust-domain-only ID (`spiffe://example.org`) is valid.
 * Never throws; the returned `id` is the input itself (valid IDs have one spelling only).
 */
export function parseSpiffeId(input: string): Parsed<SpiffeId> {
  if (typeof input !== 'string') return fail('SPIFFE ID must be a string');
  if (input.length === 0) return fail('SPIFFE ID is empty');
  // Cheap bound first, so a megabyte of input costs nothing. Below it, the UTF-8 length is what
  // the standard limits (only ASCII is valid, but report the length rule for long non-ASCII).
  if (
    input.length > MAX_ID_BYTES ||
    (input.length > MAX_ID_BYTES / 3 && Buffer.byteLength(input, 'utf8') > MAX_ID_BYTES)
  ) {
    return fail('SPIFFE ID is longer than 2048 bytes');
  }
  if (!input.startsWith(SCHEME))
    return fail('SPIFFE ID must start with spiffe:// (lower-case scheme)');

  const n = input.length;
  let i = SCHEME.length;
  for (; i < n; i++) {
    const c = input.charCodeAt(i);
    if (c === SLASH) break;
    if (!isTrustDomainChar(c)) {
      if (c >= 0x41 && c <= 0x5a) return fail('SPIFFE ID trust domain must be lower-case');
      if (c === 0x3a) return fail('SPIFFE ID trust domain must not have a port');
      if (c === 0x40) return fail('SPIFFE ID must not have user info');
      return fail(invalidCharacter(c, 'trust domain'));
    }
  }
  const tdLength = i - SCHEME.length;
  if (tdLength === 0) return fail('SPIFFE ID trust domain is empty');
  if (tdLength > MAX_TRUST_DOMAIN)
    return fail('SPIFFE ID trust domain is longer than 255 characters');

  const pathError = checkPath(input, i);
  if (pathError !== undefined) return fail(pathError);
  return {
    ok: true,
    value: { id: input, trustDomain: input.slice(SCHEME.length, i), path: input.slice(i) },
  };
}

/**
 * The path from `start` (at a '/' or the end of `s`): '' is valid; otherwise '/'-separated
 * segments, each non-empty, of path characters, and not '.' or '..'.
 */
function checkPath(s: string, start: number): string | undefined {
  const n = s.length;
  if (start === n) return undefined;
  let segStart = start + 1;
  for (let i = segStart; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : SLASH;
    if (c === SLASH) {
      const len = i - segStart;
      if (len === 0)
        return i === n
          ? 'SPIFFE ID path must not end with a slash'
          : 'SPIFFE ID path has an empty segment';
      if (
        s.charCodeAt(segStart) === DOT &&
        (len === 1 || (len === 2 && s.charCodeAt(segStart + 1) === DOT))
      ) {
        return "SPIFFE ID path segment is '.' or '..'";
      }
      segStart = i + 1;
    } else if (!isPathChar(c)) {
      return invalidCharacter(c, 'path');
    }
  }
  return undefined;
}

export interface SpiffePattern {
  /** The pattern as written. */
  readonly source: string;
  readonly trustDomain: string;
  matches(id: SpiffeId): boolean;
}

const WILDCARD_RULE =
  "a wildcard may only end a pattern, as '/*' (one segment) or '/**' (any depth)";

/**
 * Compiles a caller pattern (at policy load, never per request):
 * - `spiffe://td/a/b`    exactly that ID;
 * - `spiffe://td/a/*`    `spiffe://td/a/<one segment>`;
 * - `spiffe://td/a/**`   `spiffe://td/a` itself and anything below it (`spiffe://td/**`: the
 *                        whole trust domain).
 * The part before `/*` or `/**` must be a valid SPIFFE ID. Matching compares the trust domain
 * and path prefixes and looks for slashes: no allocation, no regular expressions.
 */
export function compileSpiffePattern(pattern: string): Parsed<SpiffePattern> {
  if (typeof pattern !== 'string') return fail('caller pattern must be a string');
  if (pattern.length === 0) return fail('caller pattern is empty');
  const quoted = `'${echo(pattern)}'`;

  const n = pattern.length;
  let kind: 'exact' | 'one' | 'any' = 'exact';
  let baseEnd = n;
  const star = pattern.indexOf('*');
  if (star !== -1) {
    if (star === n - 1 && n >= 2 && pattern.charCodeAt(n - 2) === SLASH) {
      kind = 'one';
      baseEnd = n - 2;
    } else if (
      star === n - 2 &&
      n >= 3 &&
      pattern.charCodeAt(n - 1) === 0x2a &&
      pattern.charCodeAt(n - 3) === SLASH
    ) {
      kind = 'any';
      baseEnd = n - 3;
    } else {
      return fail(`${quoted}: ${WILDCARD_RULE}`);
    }
    // `spiffe://*`, `spiffe://**`: the '/' before the wildcard belongs to the scheme.
    if (baseEnd < SCHEME.length && pattern.startsWith(SCHEME)) {
      return fail(
        `${quoted}: the trust domain cannot be a wildcard; ${WILDCARD_RULE}, after the trust domain`,
      );
    }
  }

  const parsed = parseSpiffeId(baseEnd === n ? pattern : pattern.slice(0, baseEnd));
  if (!parsed.ok) return fail(`${quoted}: ${parsed.error}`);
  const { trustDomain, path: base } = parsed.value;
  const baseLength = base.length;

  let matches: (id: SpiffeId) => boolean;
  switch (kind) {
    case 'exact':
      matches = (id) => id.trustDomain === trustDomain && id.path === base;
      break;
    case 'any':
      // The base itself, or the base followed by '/' (a segment boundary: /ns/a never matches /ns/ab).
      matches = (id) =>
        id.trustDomain === trustDomain &&
        (id.path === base ||
          (id.path.length > baseLength &&
            id.path.charCodeAt(baseLength) === SLASH &&
            id.path.startsWith(base)));
      break;
    case 'one':
      // base + '/' + one non-empty segment containing no further '/'.
      matches = (id) => {
        if (id.trustDomain !== trustDomain) return false;
        const p = id.path;
        return (
          p.length > baseLength + 1 &&
          p.charCodeAt(baseLength) === SLASH &&
          p.startsWith(base) &&
          p.indexOf('/', baseLength + 1) === -1
        );
      };
      break;
  }
  return { ok: true, value: { source: pattern, trustDomain, matches } };
}

/** At most 64 characters of policy text for an error message, control characters made visible. */
function echo(text: string): string {
  const clipped = text.length > MAX_ECHO ? text.slice(0, MAX_ECHO) : text;
  let out = '';
  for (let i = 0; i < clipped.length; i++) {
    const c = clipped.charCodeAt(i);
    out += c < 0x20 || c === 0x7f ? '?' : clipped[i];
  }
  return text.length > MAX_ECHO ? `${out}…` : out;
}
