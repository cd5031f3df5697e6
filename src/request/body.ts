import { jsonAmbiguity } from './json-scan';
import type { NormalizedRequest } from './normalize';

/**
 * What a check knows about the request body. Envoy forwards it only with `with_request_body`;
 * without that, only the headers say a body exists, and a contract that needs to read it
 * must deny rather than guess.
 */

/** The media type of content-type, lower-case, without parameters; '' when absent. */
export function mediaType(request: NormalizedRequest): string {
  const value = request.headers['content-type'];
  if (typeof value !== 'string') return '';
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
}

export type BodyState =
  | { readonly kind: 'none' }
  /** Forwarded whole: the size and the content are known. */
  | { readonly kind: 'whole'; readonly size: number }
  /** Not forwarded, or cut by the proxy, with a content-length: the size is known, the content is not. */
  | { readonly kind: 'sized'; readonly size: number; readonly why: string }
  /** A body may be there, of a size and content nobody said. */
  | { readonly kind: 'unknown'; readonly why: string }
  /** content-length that no upstream reads as a small number. */
  | { readonly kind: 'too-large'; readonly why: string };

const NONE: BodyState = { kind: 'none' };
const NOT_FORWARDED = 'the body was not forwarded by the proxy (configure with_request_body)';
const TRUNCATED = 'the proxy truncated the body (raise with_request_body.max_request_bytes)';
const BAD_LENGTH: BodyState = {
  kind: 'too-large',
  why: 'its content-length is not a decimal number of at most 15 digits',
};

/** Methods whose requests carry a body even when no header says so (an HTTP/2 POST has none). */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/**
 * A request with none of content-length, transfer-encoding, content-type and a body-capable
 * method has no body; one that may have a body the proxy did not forward is `unknown`.
 */
export function bodyState(request: NormalizedRequest): BodyState {
  const headers = request.headers;
  const length = headers['content-length'];
  const declared = length === undefined ? undefined : decimal(length);
  if (declared === -1) return BAD_LENGTH;
  const body = request.body;
  if (body !== undefined && !request.bodyPartial) {
    const forwarded = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
    return { kind: 'whole', size: Math.max(forwarded, declared ?? 0) };
  }
  const why = body === undefined ? NOT_FORWARDED : TRUNCATED;
  if (declared !== undefined && declared > 0) return { kind: 'sized', size: declared, why };
  if (headers['transfer-encoding'] !== undefined || body !== undefined)
    return { kind: 'unknown', why };
  if (declared === 0) return NONE;
  if (BODY_METHODS.has(request.method) || headers['content-type'] !== undefined)
    return { kind: 'unknown', why };
  return NONE;
}

/** A plain decimal of 1 to 15 digits, else -1: 16 digits no longer fit a double exactly. */
function decimal(value: string): number {
  if (value.length === 0 || value.length > 15) return -1;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
  }
  return Number(value);
}

/** Bodies above this are not parsed, whatever a contract allows: parsing is on the hot path. */
export const MAX_PARSED_BODY_BYTES = 1 << 20;

/** `malformed`: upstreams could read this body otherwise than Gatehouse would (refused as malformed_request). */
export type JsonBody =
  { ok: true; value: unknown } | { ok: false; reason: string; malformed: boolean };

const cache = new WeakMap<NormalizedRequest, JsonBody>();

/** The body parsed as JSON, once per check however many stages read it. */
export function jsonBody(request: NormalizedRequest): JsonBody {
  let parsed = cache.get(request);
  if (parsed === undefined) {
    parsed = parseJsonBody(request);
    cache.set(request, parsed);
  }
  return parsed;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseJsonBody(request: NormalizedRequest): JsonBody {
  const state = bodyState(request);
  switch (state.kind) {
    case 'none':
      return { ok: false, reason: 'the request has no body', malformed: false };
    case 'sized':
    case 'unknown':
      return {
        ok: false,
        reason: `the request body cannot be read: ${state.why}`,
        malformed: true,
      };
    case 'too-large':
      return { ok: false, reason: `the request body is too large: ${state.why}`, malformed: true };
    case 'whole':
      if (state.size > MAX_PARSED_BODY_BYTES)
        return {
          ok: false,
          reason: `the request body is larger than ${MAX_PARSED_BODY_BYTES} bytes`,
          malformed: false,
        };
  }
  const typeProblem = jsonTypeProblem(request);
  if (typeProblem !== undefined) return { ok: false, reason: typeProblem, malformed: true };
  const body = request.body!;
  let text: string;
  try {
    text = typeof body === 'string' ? body : utf8.decode(body);
  } catch {
    return { ok: false, reason: 'the request body is not valid UTF-8', malformed: true };
  }
  const ambiguity = jsonAmbiguity(text);
  if (ambiguity !== undefined) return { ok: false, reason: ambiguity, malformed: true };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    // The parser's message quotes the payload; it must not reach the reason.
    return { ok: false, reason: 'the request body is not valid JSON', malformed: false };
  }
}

/**
 * Body rules read the body as JSON; the upstream reads it by its content type. A JSON text sent
 * as form data is form data upstream, so only JSON types (or none, which no framework reads as
 * form data) are read, and only in UTF-8.
 */
function jsonTypeProblem(request: NormalizedRequest): string | undefined {
  const value = request.headers['content-type'];
  if (value === undefined) return undefined;
  const type = mediaType(request);
  if (type !== 'application/json' && !type.endsWith('+json'))
    return 'the request body is read as JSON by body rules but its content type is not JSON';
  const charset = value.toLowerCase().indexOf('charset=');
  if (charset === -1) return undefined;
  const name = value
    .slice(charset + 8)
    .split(';')[0]!
    .trim()
    .replaceAll('"', '')
    .toLowerCase();
  return name === 'utf-8' || name === 'utf8'
    ? undefined
    : 'the request body is JSON in a charset other than UTF-8';
}
