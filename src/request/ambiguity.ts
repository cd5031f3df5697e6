import type { NormalizedRequest } from './normalize';

/**
 * Requests that common upstreams could read differently from Gatehouse are refused as
 * malformed rather than decided on a guess: an enforcement point is bypassed wherever it
 * reads a request otherwise than the server behind it. docs/policies.md lists each case.
 */

/** Thrown where a check needs a part of the request that cannot be read without ambiguity. */
export class AmbiguousRequest extends Error {}

/**
 * Envoy joins a header sent on several lines into one value with ','. A `per: header:` bucket
 * keyed on the joined text is a fresh bucket for every `KEY,n`, while an upstream that reads
 * the first line still sees `KEY`: a keyed value holding ',' is refused.
 */
export function keyedHeaderAmbiguity(name: string, request: NormalizedRequest): string | undefined {
  const value = request.headers[name];
  if (value === undefined || !value.includes(',')) return undefined;
  return `header ${name}, which keys a rate limit, was sent more than once or holds ','`;
}

/**
 * A Bearer credential never holds ',' (RFC 6750 b64token): one that does was sent on more than
 * one line, and a first-line reader upstream would see another credential than the join.
 */
export function credentialHeaderAmbiguity(
  headers: Readonly<Record<string, string>>,
): string | undefined {
  const authorization = headers['authorization'];
  if (authorization === undefined || !authorization.includes(',')) return undefined;
  if (authorization.length < 7 || authorization.slice(0, 7).toLowerCase() !== 'bearer ')
    return undefined;
  return 'the authorization header carries more than one bearer credential';
}
