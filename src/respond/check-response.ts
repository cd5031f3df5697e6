import type { Decision } from '../pipeline/decision';

/** HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/** google.rpc.Code values carried in CheckResponse.status. */
export const RPC_CODE = {
  OK: 0,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNAUTHENTICATED: 16,
} as const;

const RPC_CODE_FOR_STATUS: Record<number, number> = {
  401: RPC_CODE.UNAUTHENTICATED,
  403: RPC_CODE.PERMISSION_DENIED,
  429: RPC_CODE.RESOURCE_EXHAUSTED,
};

const ERROR_FOR_STATUS: Record<number, string> = {
  401: 'unauthenticated',
  403: 'forbidden',
  429: 'rate_limited',
};

export interface HeaderOption {
  header: { key: string; value: string };
  appendAction: number;
}

/** The wire shape of envoy.service.auth.v3.CheckResponse for proto-loader (camelCase). */
export interface CheckResponseMessage {
  status: { code: number; message: string };
  okResponse?: {
    headers: HeaderOption[];
    headersToRemove: readonly string[];
    responseHeadersToAdd: HeaderOption[];
  };
  deniedResponse?: { status: { code: number }; headers: HeaderOption[]; body: string };
}

function header([key, value]: HeaderPair): HeaderOption {
  // `append` stays unset and the action is explicit, so every Envoy version overwrites.
  return { header: { key, value }, appendAction: OVERWRITE_IF_EXISTS_OR_ADD };
}

export type HeaderPair = readonly [key: string, value: string];

/**
 * Dialect-neutral: the headers a decision produces. On allow: for the upstream
 * request (caller, policy, decision id) and for the client response (rate limit state).
 * On deny: for the client's reply.
 */
export function allowHeaders(decision: Decision): { upstream: HeaderPair[]; client: HeaderPair[] } {
  const upstream: HeaderPair[] = [['x-gatehouse-decision', decision.id]];
  if (decision.caller !== undefined) upstream.push(['x-gatehouse-caller', decision.caller]);
  if (decision.policy !== undefined) upstream.push(['x-gatehouse-policy', decision.policy.label]);
  return { upstream, client: rateLimitHeaders(decision) };
}

export function denyHeaders(decision: Decision): HeaderPair[] {
  const headers: HeaderPair[] = [
    ['content-type', 'application/json'],
    ['x-gatehouse-decision', decision.id],
    ...rateLimitHeaders(decision),
  ];
  if (decision.status === 429)
    headers.push(['retry-after', String(Math.max(1, decision.limit?.retryAfterSeconds ?? 1))]);
  return headers;
}

/** A decision as Envoy's gRPC ext_authz reads it. A deny is still a successful RPC. */
export function toCheckResponse(decision: Decision): CheckResponseMessage {
  if (decision.allowed) {
    const { upstream, client } = allowHeaders(decision);
    return {
      status: { code: RPC_CODE.OK, message: '' },
      okResponse: {
        headers: upstream.map(header),
        headersToRemove: headersToRemove(decision),
        responseHeadersToAdd: client.map(header),
      },
    };
  }
  return {
    status: {
      code: RPC_CODE_FOR_STATUS[decision.status] ?? RPC_CODE.PERMISSION_DENIED,
      message: decision.reason,
    },
    deniedResponse: {
      status: { code: decision.status },
      headers: denyHeaders(decision).map(header),
      body: denyBody(decision),
    },
  };
}

/**
 * Client-sent x-gatehouse-* headers that this answer does not overwrite, and the caller's
 * token when its rule says so. A header Gatehouse sets is left off (it is replaced, and
 * removing it too could delete our own value); one it does not set this time, such as
 * x-gatehouse-caller on a dry-run allow without an identity, is removed, so an upstream
 * never sees a client's value under Gatehouse's name.
 */
export function headersToRemove(decision: Decision): readonly string[] {
  let remove = decision.spoofedHeaders;
  if (remove.length > 0) {
    // Derived from the headers this answer sets, so the two can never disagree.
    const upstream = allowHeaders(decision).upstream;
    remove = remove.filter((name) => !upstream.some(([key]) => key === name));
  }
  return decision.rule?.stripToken ? [...remove, 'authorization'] : remove;
}

/** The JSON body of a denial. Built from the reason only, which never holds a credential. */
export function denyBody(decision: Decision): string {
  return JSON.stringify({
    error: ERROR_FOR_STATUS[decision.status] ?? 'forbidden',
    reason: decision.reason,
    decision_id: decision.id,
  });
}

function rateLimitHeaders(decision: Decision): HeaderPair[] {
  const limit = decision.limit;
  if (limit === undefined) return [];
  return [
    ['ratelimit-limit', String(limit.limit)],
    ['ratelimit-remaining', String(limit.remaining)],
    ['ratelimit-reset', String(limit.resetSeconds)],
  ];
}
