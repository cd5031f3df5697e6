import type { IdentitySource } from '../identity/resolve';
import type { CompiledPolicy, CompiledRule } from '../policy/types';
import type { LimitResult } from '../ratelimit/types';

export type DenyStatus = 401 | 403 | 429;

/** Stable, low-cardinality reason codes (metrics labels, audit, tests). */
export type ReasonCode =
  | 'allowed'
  | 'malformed_request'
  | 'no_identity'
  | 'invalid_identity'
  | 'untrusted_domain'
  | 'unknown_host'
  | 'host_mismatch'
  | 'route_mismatch'
  | 'no_matching_rule'
  | 'caller_not_allowed'
  | 'caller_refused'
  | 'mtls_required'
  | 'condition_error'
  | 'caller_opt_out'
  | 'quarantined'
  | 'grant_dormant'
  | 'residency_violation'
  | 'payload_rejected'
  | 'rate_limited'
  | 'limit_backend_error';

export interface Verdict {
  readonly allowed: boolean;
  readonly status: 200 | DenyStatus;
  readonly code: ReasonCode;
  /** Human-readable, never contains a credential. */
  readonly reason: string;
}

/** Everything known about one check once it is decided; read by respond and audit. */
export interface Decision extends Verdict {
  readonly id: string;
  readonly host: string | undefined;
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly requestId: string | undefined;
  /** W3C trace context of the request, when well-formed. */
  readonly traceparent: string | undefined;
  readonly caller: string | undefined;
  readonly identitySource: IdentitySource | undefined;
  readonly policy: CompiledPolicy | undefined;
  readonly policyVersion: string;
  /** Git commit of the policy set (`-dirty` when edited), when known. */
  readonly policyCommit: string | undefined;
  readonly rule: CompiledRule | undefined;
  /** The allow or deny entry of `rule` that decided. */
  readonly entry: { readonly list: 'allow' | 'deny'; readonly index: number } | undefined;
  readonly limit: LimitResult | undefined;
  /** The limit backend failed and onBackendError decided. */
  readonly limitBackendError: string | undefined;
  /** In dry-run (a dry-run policy, WorkloadPolicy or quarantine), the denial that was not enforced. */
  readonly wouldDeny: Verdict | undefined;
  /** The caller's WorkloadPolicy refusal that decided or would have, as `policy/refusal`. */
  readonly optOut: string | undefined;
  /** Client-sent x-gatehouse-* headers to strip upstream. */
  readonly spoofedHeaders: readonly string[];
  readonly latencyMs: number;
  /** `attributes.destination.principal`, for the audit record (replay). */
  readonly destination: string | undefined;
  /** The raw query; the audit record keeps its keys only. */
  readonly query: string | undefined;
  /** The policy set's tracked header names and, as bit i, whether names[i] was sent. */
  readonly auditHeaders: readonly string[];
  readonly headerPresence: number;
  /** The request may carry a body (bodyState is not `none`); never its content. */
  readonly bodyPresent: boolean;
}

export const ALLOWED: Verdict = { allowed: true, status: 200, code: 'allowed', reason: 'allowed' };

export function deny(status: DenyStatus, code: ReasonCode, reason: string): Verdict {
  return { allowed: false, status, code, reason };
}
