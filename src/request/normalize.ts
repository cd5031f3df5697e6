import { UNDECODABLE, type CheckInput } from '../envoy/check-input';
import { credentialHeaderAmbiguity } from './ambiguity';
import { authorityPortError } from './authority';

/**
 * Turn Envoy's CheckRequest (as decoded by the server's codec: camelCase, defaults
 * off, google.protobuf.Struct in its JSON form) into the few fields the decision needs. Everything here is hostile input: missing
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
  /** `attributes.destination.principal`: the receiving workload's SPIFFE ID as Envoy knows it, '' when absent. */
  readonly destinationPrincipal: string;
  readonly requestId: string | undefined;
  /** `traceparent` when it is well-formed W3C trace context, so a decision can be found from a trace. */
  readonly traceparent: string | undefined;
  /** Every client-sent `x-gatehouse-*` header, lower-cased; respond decides which to remove. */
  readonly spoofedHeaders: readonly string[];
  /** Raw query of `:path` after '?', before any '#', not decoded; '' when none. Read it with parseQuery. */
  readonly query: string;
  /**
   * HttpRequest `body` (string) or `raw_body` (bytes), present only when Envoy forwarded one
   * (`with_request_body`); undefined otherwise, which is not the same as an empty body.
   */
  readonly body: string | Uint8Array | undefined;
  /** Envoy cut the body at `max_request_bytes` (it says so in `x-envoy-auth-partial-body`). */
  readonly bodyPartial: boolean;
  /** Per-route `context_extensions` (gRPC mode only). Null prototype. */
  readonly contextExtensions: Readonly<Record<string, string>>;
  /** `attributes.destination.labels`: Envoy's node labels (`bootstrap_metadata_labels_key`). Null prototype. */
  readonly destinationLabels: Readonly<Record<string, string>>;
  /** `metadata_context.filter_metadata` as JSON, namespace → object (e.g. jwt_authn's claims). Null prototypes. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

export type NormalizeResult =
  | { ok: true; request: NormalizedRequest }
  | { ok: false; reason: string; host?: string; method?: string; path?: string };

const MAX_PATH = 8192;
const MAX_HOST = 1024;
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze(Object.create(null));
const EMPTY_STRINGS: Readonly<Record<string, string>> = EMPTY_HEADERS;
const EMPTY_METADATA: Readonly<Record<string, unknown>> = Object.freeze(Object.create(null));

// Minimal structural views of the decoded message; every field may be missing.
interface Obj {
  [k: string]: unknown;
}

export function normalizeCheckRequest(checkRequest: CheckInput): NormalizeResult {
  if (checkRequest === UNDECODABLE)
    return { ok: false, reason: 'CheckRequest bytes could not be decoded' };
  const attributes = field(checkRequest, 'attributes');
  const http = field(field(attributes, 'request'), 'http');
  if (http === undefined) return tcpRequest(attributes);

  const headers = headerRecord(field(http, 'headers'));
  if (typeof headers === 'string')
    return { ok: false, reason: `request header '${clipText(headers, 64)}' is not a string` };

  const rawHost = str(field(http, 'host')) || str(headers[':authority']) || str(headers['host']);
  const rawMethod = str(field(http, 'method')) || str(headers[':method']);
  const rawPath = str(field(http, 'path')) || str(headers[':path']);

  if (rawHost === '') return { ok: false, reason: 'request has no host (:authority)' };
  if (rawHost.length > MAX_HOST) return { ok: false, reason: 'request host is too long' };
  const portError = authorityPortError(rawHost);
  if (portError !== undefined) return { ok: false, reason: portError };
  const host = normalizeHost(rawHost);
  if (rawMethod === '' || !isToken(rawMethod))
    return { ok: false, reason: 'request has no valid method', host };
  if (rawPath === '') return { ok: false, reason: 'request has no path', host, method: rawMethod };
  if (rawPath.length > MAX_PATH)
    return { ok: false, reason: 'request path is too long', host, method: rawMethod };

  const path = normalizePath(stripQuery(rawPath));
  if (typeof path !== 'string')
    return {
      ok: false,
      reason: path.error,
      host,
      method: rawMethod,
      path: clipText(stripQuery(rawPath)),
    };
  const credential = credentialHeaderAmbiguity(headers) ?? repeatedCredentialLine(http);
  if (credential !== undefined)
    return { ok: false, reason: credential, host, method: rawMethod, path };
  const metadata = metadataOf(attributes);
  if (metadata === undefined)
    return { ok: false, reason: 'metadata nests too deeply', host, method: rawMethod, path };
  // It selects the policy: too long to be a workload's ID is malformed, never "absent".
  const destinationPrincipal = str(field(field(attributes, 'destination'), 'principal'));
  if (destinationPrincipal.length > MAX_PRINCIPAL)
    return {
      ok: false,
      reason: 'destination principal is too long',
      host,
      method: rawMethod,
      path,
    };

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
      destinationPrincipal,
      requestId: boundedHeader(headers['x-request-id']),
      traceparent: traceparent(headers['traceparent']),
      spoofedHeaders: spoofedGatehouseHeaders(headers),
      query: rawQuery(rawPath),
      body: bodyOf(http),
      bodyPartial: headers['x-envoy-auth-partial-body'] === 'true',
      contextExtensions: stringRecord(field(attributes, 'contextExtensions')),
      destinationLabels: stringRecord(field(field(attributes, 'destination'), 'labels')),
      metadata,
    },
  };
}

/**
 * A CheckRequest without HTTP attributes is a connection-level check: who connects to which
 * workload. Only the peers are known; the destination is named by its own SPIFFE ID.
 */
function tcpRequest(attributes: unknown): NormalizeResult {
  const destination = str(field(field(attributes, 'destination'), 'principal'));
  if (destination === '')
    return {
      ok: false,
      reason: 'CheckRequest has no HTTP request attributes and no destination principal',
    };
  if (destination.length > MAX_PRINCIPAL)
    return { ok: false, reason: 'destination principal is too long' };
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
      destinationPrincipal: destination,
      requestId: undefined,
      traceparent: undefined,
      spoofedHeaders: NO_HEADERS,
      query: '',
      body: undefined,
      bodyPartial: false,
      contextExtensions: EMPTY_STRINGS,
      destinationLabels: EMPTY_STRINGS,
      metadata: EMPTY_METADATA,
    },
  };
}

/**
 * Header names are case-insensitive and Envoy sends them lower-case, which is how every stage
 * looks them up. The codec's record (null prototype) is lower-cased already; a caller's plain
 * object is copied with lower-cased names, a name given twice joined with ',' as Envoy joins
 * repeated lines, so `X-Api-Key` is never a header that rules do not see. A value that is not a
 * string is no header a rule could read, nor one to ignore: its name is returned, to refuse.
 */
function headerRecord(value: unknown): Readonly<Record<string, string>> | string {
  if (!isObj(value)) return EMPTY_HEADERS;
  if (Object.getPrototypeOf(value) === null)
    return nonStringKey(value as Obj) ?? (value as Record<string, string>);
  const out = Object.create(null) as Record<string, string>;
  for (const key of Object.keys(value as Obj)) {
    const v = (value as Obj)[key];
    if (typeof v !== 'string') return key;
    const name = key.toLowerCase();
    const previous = out[name];
    out[name] = previous === undefined ? v : `${previous},${v}`;
  }
  return out;
}

/** The codec names a credential header that `header_map` carried on more than one line. */
function repeatedCredentialLine(http: unknown): string | undefined {
  const name = field(http, 'repeatedCredentialHeader');
  return typeof name === 'string' ? `the ${name} header was sent on more than one line` : undefined;
}

const MAX_PRINCIPAL = 2048;

/** `body` wins over `raw_body` should a sender set both; Envoy sets one or the other. */
function bodyOf(http: unknown): string | Uint8Array | undefined {
  const body = field(http, 'body');
  if (typeof body === 'string') return body;
  const raw = field(http, 'rawBody');
  return raw instanceof Uint8Array ? raw : undefined;
}

/**
 * A map<string, string> the decoder built (null prototype, string values) is used as is.
 * Anything else (a caller's plain object) is copied into a null-prototype record of its
 * string values, so an inherited name like `constructor` never reads as a present key.
 */
function stringRecord(value: unknown): Readonly<Record<string, string>> {
  if (!isObj(value)) return EMPTY_STRINGS;
  if (Object.getPrototypeOf(value) === null && nonStringKey(value as Obj) === undefined)
    return value as Record<string, string>;
  let out: Record<string, string> | undefined;
  for (const key of Object.keys(value as Obj)) {
    const v = (value as Obj)[key];
    if (typeof v === 'string') (out ??= Object.create(null) as Record<string, string>)[key] = v;
  }
  return out ?? EMPTY_STRINGS;
}

/** The first key of `record` whose value is not a string. */
function nonStringKey(record: Obj): string | undefined {
  for (const key in record) if (typeof record[key] !== 'string') return key;
  return undefined;
}

const MAX_METADATA_DEPTH = 32;

/**
 * `metadataContext.filterMetadata`, in proto3 JSON form. The wire decoder already bounds its
 * depth and builds null-prototype objects, so its output is used as is; a caller's plain
 * object is copied under the same rules. undefined means it nests too deeply.
 */
function metadataOf(attributes: unknown): Readonly<Record<string, unknown>> | undefined {
  const filterMetadata = field(field(attributes, 'metadataContext'), 'filterMetadata');
  if (!isObj(filterMetadata)) return EMPTY_METADATA;
  if (Object.getPrototypeOf(filterMetadata) === null)
    return filterMetadata as Record<string, unknown>;
  const out = Object.create(null) as Record<string, unknown>;
  for (const ns of Object.keys(filterMetadata as Obj)) {
    const value = jsonCopy((filterMetadata as Obj)[ns], 1);
    if (value === TOO_DEEP) return undefined;
    out[ns] = isObj(value) ? value : Object.create(null);
  }
  return out;
}

const TOO_DEEP = Symbol('too deep');

function jsonCopy(value: unknown, depth: number): unknown {
  if (
    value === null ||
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    typeof value === 'number'
  )
    return value;
  if (typeof value !== 'object') return null;
  if (depth > MAX_METADATA_DEPTH) return TOO_DEEP;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const item of value) {
      const copied = jsonCopy(item, depth + 1);
      if (copied === TOO_DEEP) return TOO_DEEP;
      out.push(copied);
    }
    return out;
  }
  const out = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(value)) {
    const copied = jsonCopy((value as Obj)[key], depth + 1);
    if (copied === TOO_DEEP) return TOO_DEEP;
    out[key] = copied;
  }
  return out;
}

/** version-traceid-parentid-flags: 2, 32, 16 and 2 lower-case hex digits. */
function traceparent(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length !== 55) return undefined;
  for (let i = 0; i < 55; i++) {
    const c = value.charCodeAt(i);
    const dash = i === 2 || i === 35 || i === 52;
    if (dash ? c !== 0x2d : !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)))
      return undefined;
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

/** The query of a raw `:path`: after the first '?', up to a '#'; a '?' inside the fragment is not one. */
function rawQuery(path: string): string {
  const q = path.indexOf('?');
  if (q === -1) return '';
  const hash = path.indexOf('#');
  if (hash === -1) return path.slice(q + 1);
  return hash < q ? '' : path.slice(q + 1, hash);
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
 * is a rule bypass. So are `;` parameters (Tomcat and Jetty strip `/admin;x/users` to
 * `/admin/users`) and empty segments (nginx, Tomcat and Jetty merge `//admin` to `/admin`),
 * which Envoy forwards unchanged. Envoy's normalize_path/merge_slashes should be on as well.
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
      if (byte === 0x2f || byte === 0x5c || byte === 0x00 || byte === 0x3b) {
        return { error: "request path has an encoded slash, backslash, ';' or NUL" };
      }
      decoded +=
        path.slice(last, i) +
        (isUnreserved(byte) ? String.fromCharCode(byte) : `%${hex.toUpperCase()}`);
      last = i + 3;
      i += 2;
    }
    out = decoded + path.slice(last);
  }
  for (let i = 0; i < out.length; i++) {
    const c = out.charCodeAt(i);
    if (c === 0x5c || c < 0x21 || c === 0x7f)
      return { error: 'request path has a backslash, space or control character' };
    if (c === 0x3b)
      return {
        error: "request path has a ';' parameter, which Tomcat and Jetty strip before routing",
      };
    if (c === 0x2f && out.charCodeAt(i + 1) === 0x2f)
      return {
        error: "request path has an empty segment ('//'), which nginx, Tomcat and Jetty merge",
      };
  }
  if (out.includes('/.') && hasDotSegment(out))
    return { error: "request path has a '.' or '..' segment" };
  return out;
}

function hasDotSegment(path: string): boolean {
  let start = 1;
  while (start <= path.length) {
    let end = path.indexOf('/', start);
    if (end === -1) end = path.length;
    const len = end - start;
    if (
      (len === 1 && path.charCodeAt(start) === 0x2e) ||
      (len === 2 && path.startsWith('..', start))
    )
      return true;
    start = end + 1;
  }
  return false;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5f ||
    c === 0x7e
  );
}

/** RFC 9110 token. */
function isToken(s: string): boolean {
  if (s.length > 32) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      "!#$%&'*+-.^_`|~".includes(s[i]!);
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
