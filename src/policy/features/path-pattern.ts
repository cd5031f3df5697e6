/**
 * Route path patterns, parsed once at load:
 *   /v1/orders      exact
 *   /v1/orders/*    `*` is exactly one non-empty segment (allowed in any position)
 *   /v1/orders/**   `**` is zero or more segments (last position only)
 * Matching walks the request path in place: no split, no regex, no allocation.
 */

const enum Kind {
  Literal,
  One,
  Any,
}

interface Token {
  readonly kind: Kind;
  readonly text: string;
}

export interface PathPattern {
  readonly source: string;
  matches(path: string): boolean;
}

export type PathPatternResult = { ok: true; value: PathPattern } | { ok: false; error: string };

// RFC 3986 pchar minus '%' (patterns are written decoded) and minus '*' (wildcard only).
function isSegmentChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5f ||
    c === 0x7e || // - . _ ~
    c === 0x21 ||
    c === 0x24 ||
    c === 0x26 ||
    c === 0x27 ||
    c === 0x28 ||
    c === 0x29 || // ! $ & ' ( )
    c === 0x2b ||
    c === 0x2c ||
    c === 0x3b ||
    c === 0x3d ||
    c === 0x3a ||
    c === 0x40 // + , ; = : @
  );
}

export function compilePathPattern(source: string): PathPatternResult {
  if (typeof source !== 'string' || source.length === 0)
    return { ok: false, error: 'path pattern must be a non-empty string' };
  if (source.length > 1024)
    return { ok: false, error: 'path pattern is longer than 1024 characters' };
  if (source.charCodeAt(0) !== 0x2f)
    return { ok: false, error: `path pattern must start with '/'` };
  if (source.includes('?') || source.includes('#')) {
    return {
      ok: false,
      error: 'path patterns match the path without its query string; remove the ? or # part',
    };
  }
  if (source === '/') return { ok: true, value: exact(source) };

  const parts = source.slice(1).split('/');
  const tokens: Token[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const last = i === parts.length - 1;
    if (part === '**') {
      if (!last)
        return { ok: false, error: `'**' is only allowed as the last segment (e.g. /v1/**)` };
      tokens.push({ kind: Kind.Any, text: part });
    } else if (part === '*') {
      tokens.push({ kind: Kind.One, text: part });
    } else if (part === '') {
      if (!last) return { ok: false, error: 'path pattern has an empty segment (//)' };
      tokens.push({ kind: Kind.Literal, text: '' }); // trailing slash is significant, as in the request
    } else if (part === '.' || part === '..') {
      return {
        ok: false,
        error: `path pattern has a '${part}' segment; requests with one are always denied`,
      };
    } else {
      for (let j = 0; j < part.length; j++) {
        const c = part.charCodeAt(j);
        if (c === 0x2a)
          return {
            ok: false,
            error: `'*' must be a whole segment ('/a/*'), not part of one ('${part}')`,
          };
        if (!isSegmentChar(c))
          return {
            ok: false,
            error: `path pattern segment '${part}' has a character not allowed in a path`,
          };
      }
      tokens.push({ kind: Kind.Literal, text: part });
    }
  }
  if (tokens.every((t) => t.kind === Kind.Literal)) return { ok: true, value: exact(source) };
  return { ok: true, value: { source, matches: (path) => matchTokens(tokens, path) } };
}

function exact(source: string): PathPattern {
  return { source, matches: (path) => path === source };
}

function matchTokens(tokens: readonly Token[], path: string): boolean {
  if (path.charCodeAt(0) !== 0x2f) return false;
  let pos = 1; // start of the current segment
  const len = path.length;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === Kind.Any) return true; // zero or more segments remain
    if (pos > len) return false; // path ran out of segments
    let end = path.indexOf('/', pos);
    if (end === -1) end = len;
    if (token.kind === Kind.One) {
      if (end === pos) return false; // '*' never matches an empty segment
    } else if (end - pos !== token.text.length || !path.startsWith(token.text, pos)) {
      return false;
    }
    pos = end + 1;
  }
  return pos > len; // every segment consumed
}
