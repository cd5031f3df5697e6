/**
 * Stage 1: turn Envoy's CheckRequest (as decoded by proto-loader, camelCase, defaults off)
 * into the few fields the decision needs. Everything here is hostile input: missing
 * sub-messages, odd types, giant values. Anything that cannot be read safely is reported
 * as malformed so the pipeline denies it.
 */

export interface NormalizedRequest {
  /** `tcp`: a network-level check (Istio's TCP ext_authz) with no HTTP attributes. */
  readonly kind: 'http' | 'tcp';
  /** Lower-case :authority without port or trailing dot; for TCP, the destination's SPIFFE ID. */
  readonly host: string;
  readonly method: string;
  /** Path without query or fragment, RFC 3986-normalised (unreserved %XX decoded). */
  readonly path: string;
  /** Request headers as Envoy sent them (lower-case keys). */
  readonly headers: Readonly<Record<string, string>>;
  /** `attributes.source.principal`, '' when absent. */
  readonly principal: string;
  /** `attributes.source.certificate` (URL-encoded PEM), '' when absent. */
  readonly certificate: string;
  readonly requestId: string | undefined;
  /** `traceparent` when it is well-formed W3C trace context, so a decision can be found from a trace. */
  readonly traceparent: string | undefined;
  /** Every client-sent `x-gatehouse-*` header, lower-cased; respond decides which to remove. */
  readonly spoofedHeaders: readonly string[];
}

export type NormalizeResult =
  | { ok: true; request: NormalizedRequest }
  | { ok: false; reason: string; host?: string; method?: string; path?: string };

const MAX_PATH = 8192;
const MAX_HOST = 1024;
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze(Object.create(null));

// Minimal structural views of the decoded message; every field may be missing.
interface Obj {
  [k: string]: unknown;
}

/** Stands in for a CheckRequest whose bytes did not decode. */
export const UNDECODABLE: Readonly<Record<string, unknown>> = Object.freeze({ [Symbol.for('gatehouse.undecodable')]: true });

export function normalizeCheckRequest(checkRequest: unknown): NormalizeResult {
  if (checkRequest === UNDECODABLE) return { ok: false, reason: 'CheckRequest bytes could not be decoded' };
  const attributes = field(checkRequest, 'attributes');
  const http = field(field(attributes, 'request'), 'http');
  if (http === undefined) return tcpRequest(attributes);

  const rawHeaders = field(http, 'headers');
  const headers = isObj(rawHeaders) ? (rawHeaders as Record<string, string>) : EMPTY_HEADERS;

  const rawHost = str(field(http, 'host')) || str(headers[':authority']) || str(headers['host']);
  const rawMethod = str(field(http, 'method')) || str(headers[':method']);
  const rawPath = str(field(http, 'path')) || str(headers[':path']);

  if (rawHost === '') return { ok: false, reason: 'request has no host (:authority)' };
  if (rawHost.length > MAX_HOST) return { ok: false, reason: 'request host is too long' };
  const host = normalizeHost(rawHost);
  if (rawMethod === '' || !isToken(rawMethod)) return { ok: false, reason: 'request has no valid method', host };
  if (rawPath === '') return { ok: false, reason: 'request has no path', host, method: rawMethod };
  if (rawPath.length > MAX_PATH) return { ok: false, reason: 'request path is too long', host, method: rawMethod };

  const path = normalizePath(stripQuery(rawPath));
  if (typeof path !== 'string') return { ok: false, reason: path.error, host, method: rawMethod, path: clipText(stripQuery(rawPath)) };

  return {
    ok: true,
    request: {
      kind: 'http',
      host,
      method: rawMethod,
      path,
      headers,
      principal: str(field(field(attributes, 'source'), 'principal')),
      certificate: str(field(field(attributes, 'source'), 'certificate')),
      requestId: boundedHeader(headers['x-request-id']),
      traceparent: traceparent(headers['traceparent']),
      spoofedHeaders: spoofedGatehouseHeaders(headers),
    },
  };
}

/**
 * A CheckRequest without HTTP attributes is a connection-level check: who connects to which
 * workload. Only the peers are known; the destination is named by its own SPIFFE ID.
 */
function tcpRequest(attributes: unknown): NormalizeResult {
  const destination = str(field(field(attributes, 'destination'), 'principal'));
  if (destination === '') return { ok: false, reason: 'CheckRequest has no HTTP request attributes and no destination principal' };
  if (destination.length > 2048) return { ok: false, reason: 'destination principal is too long' };
  const source = field(attributes, 'source');
  return {
    ok: true,
    request: {
      kind: 'tcp',
      host: destination,
      method: 'TCP',
      path: '',
      headers: EMPTY_HEADERS,
      principal: str(field(source, 'principal')),
      certificate: str(field(source, 'certificate')),
      requestId: undefined,
      traceparent: undefined,
      spoofedHeaders: NO_HEADERS,
    },
  };
}

/** version-traceid-parentid-flags: 2, 32, 16 and 2 lower-case hex digits. */
function traceparent(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length !== 55) return undefined;
  for (let i = 0; i < 55; i++) {
    const c = value.charCodeAt(i);
    const dash = i === 2 || i === 35 || i === 52;
    if (dash ? c !== 0x2d : !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return undefined;
  }
  return value;
}

function boundedHeader(value: unknown): string | undefined {
  return typeof value === 'string' ? clipText(value, 128) : undefined;
}

function spoofedGatehouseHeaders(headers: Readonly<Record<string, string>>): string[] {
  let out: string[] | undefined;
  for (const key in headers) {
    // Cheap pre-check before lower-casing: 'x-gatehouse-' is 12 characters.
    if (key.length < 12 || (key.charCodeAt(0) | 0x20) !== 0x78) continue;
    const lower = key.toLowerCase();
    if (lower.startsWith('x-gatehouse-')) (out ??= []).push(lower);
  }
  return out ?? NO_HEADERS;
}
const NO_HEADERS: string[] = [];

export function normalizeHost(raw: string): string {
  let host = raw;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    if (close !== -1) host = host.slice(0, close + 1);
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1 && host.indexOf(':') === colon) host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  return host.toLowerCase();
}

function stripQuery(path: string): string {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x3f || c === 0x23) return path.slice(0, i);
  }
  return path;
}

/**
 * Paths are matched the way an upstream will read them, or not at all. Percent-encoded
 * unreserved characters are decoded (so `/%61dmin` is `/admin`); encoded `/`, `\`, NUL and
 * dot segments are refused, since upstreams disagree on what they mean and each disagreement
 * is a rule bypass. Envoy's normalize_path/merge_slashes should be on as well.
 */
export function normalizePath(path: string): string | { error: string } {
  if (path.charCodeAt(0) !== 0x2f) return { error: "request path must start with '/'" };
  let out = path;
  if (path.includes('%')) {
    let decoded = '';
    let last = 0;
    for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 1)) {
      const hex = path.slice(i + 1, i + 3);
      if (hex.length !== 2 || !isHex(hex.charCodeAt(0)) || !isHex(hex.charCodeAt(1))) {
        return { error: 'request path has an invalid percent-encoding' };
      }
      const byte = parseInt(hex, 16);
      if (byte === 0x2f || byte === 0x5c || byte === 0x00) {
        return { error: 'request path has an encoded slash, backslash or NUL' };
      }
      decoded += path.slice(last, i) + (isUnreserved(byte) ? String.fromCharCode(byte) : `%${hex.toUpperCase()}`);
      last = i + 3;
      i += 2;
    }
    out = decoded + path.slice(last);
  }
  for (let i = 0; i < out.length; i++) {
    const c = out.charCodeAt(i);
    if (c === 0x5c || c < 0x21 || c === 0x7f) return { error: 'request path has a backslash, space or control character' };
  }
  if (out.includes('/.') && hasDotSegment(out)) return { error: "request path has a '.' or '..' segment" };
  return out;
}

function hasDotSegment(path: string): boolean {
  let start = 1;
  while (start <= path.length) {
    let end = path.indexOf('/', start);
    if (end === -1) end = path.length;
    const len = end - start;
    if ((len === 1 && path.charCodeAt(start) === 0x2e) || (len === 2 && path.startsWith('..', start))) return true;
    start = end + 1;
  }
  return false;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

/** RFC 9110 token. */
function isToken(s: string): boolean {
  if (s.length > 32) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || '!#$%&\'*+-.^_`|~'.includes(s[i]!);
    if (!ok) return false;
  }
  return true;
}

function field(obj: unknown, key: string): unknown {
  return isObj(obj) ? (obj as Obj)[key] : undefined;
}

function isObj(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

export function clipText(text: string, max = 256): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}
