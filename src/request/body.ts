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

/** Bytes the body has: the larger of what was forwarded and what content-length declares. */
export function bodySize(request: NormalizedRequest): number {
  const forwarded = request.body === undefined ? 0 : typeof request.body === 'string' ? Buffer.byteLength(request.body) : request.body.byteLength;
  return Math.max(forwarded, declaredLength(request));
}

/** content-length as a number; 0 when absent or not a plain decimal. */
export function declaredLength(request: NormalizedRequest): number {
  const value = request.headers['content-length'];
  if (typeof value !== 'string' || value.length === 0 || value.length > 15) return 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 0;
  }
  return Number(value);
}

/** The request says it carries a body (a length, or chunked framing). */
export function hasBody(request: NormalizedRequest): boolean {
  if (request.body !== undefined && (typeof request.body === 'string' ? request.body.length : request.body.byteLength) > 0) return true;
  return declaredLength(request) > 0 || typeof request.headers['transfer-encoding'] === 'string';
}

/** Bodies above this are not parsed, whatever a contract allows: parsing is on the hot path. */
export const MAX_PARSED_BODY_BYTES = 1 << 20;

export type JsonBody = { ok: true; value: unknown } | { ok: false; reason: string };

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

function parseJsonBody(request: NormalizedRequest): JsonBody {
  if (request.body === undefined) {
    return hasBody(request)
      ? { ok: false, reason: 'the request body was not forwarded by the proxy (configure with_request_body)' }
      : { ok: false, reason: 'the request has no body' };
  }
  if (request.bodyPartial) return { ok: false, reason: 'the request body was truncated by the proxy (raise with_request_body.max_request_bytes)' };
  if (bodySize(request) > MAX_PARSED_BODY_BYTES) return { ok: false, reason: `the request body is larger than ${MAX_PARSED_BODY_BYTES} bytes` };
  const text = typeof request.body === 'string' ? request.body : Buffer.from(request.body.buffer, request.body.byteOffset, request.body.byteLength).toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    // The parser's message quotes the payload; it must not reach the reason.
    return { ok: false, reason: 'the request body is not valid JSON' };
  }
}
