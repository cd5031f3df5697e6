import { parseSpiffeId, type SpiffePattern } from '../../identity/spiffe';
import type { NormalizedRequest } from '../../request/normalize';
import type { CompiledPolicy, DestinationIndex } from '../types';
import { BoundedMemo } from '../../util/bounded-memo';

/**
 * The per-route `context_extensions` key that names the policy of a route. Route configuration
 * is the operator's, so it may name a policy; client headers never may.
 */
export const POLICY_CONTEXT_KEY = 'gatehouse_policy';

/** What selection needs of a policy set. */
export interface SelectionIndex {
  readonly byHost: ReadonlyMap<string, CompiledPolicy>;
  readonly byName: ReadonlyMap<string, CompiledPolicy>;
  readonly destinations: DestinationIndex;
}

/** Each policy with its `workloads:` as compiled patterns. */
export function buildDestinationIndex(
  policies: readonly { policy: CompiledPolicy; workloads: readonly SpiffePattern[] }[],
): DestinationIndex {
  const exact = new Map<string, CompiledPolicy>();
  const patterns: { pattern: SpiffePattern; policy: CompiledPolicy }[] = [];
  for (const { policy, workloads } of policies) {
    for (const pattern of workloads) {
      if (!pattern.source.includes('*')) exact.set(pattern.source, policy);
      else patterns.push({ pattern, policy });
    }
  }
  // A longer base is more specific: `/ns/pay/sa/*` wins over `/ns/pay/**`, whatever the file order.
  patterns.sort((a, b) => b.pattern.source.length - a.pattern.source.length);
  return { exact, patterns };
}

/** The policy guarding a destination workload; undefined when none names it. */
export function policyForDestination(
  index: DestinationIndex,
  principal: string,
): CompiledPolicy | undefined {
  const exact = index.exact.get(principal);
  if (exact !== undefined || index.patterns.length === 0) return exact;
  // Parsing and matching every pattern on every check is the costly part; an index never
  // changes, so its answers are remembered per index (dropped with it when a reload replaces it).
  let memo = patternAnswers.get(index);
  if (memo === undefined) {
    memo = new BoundedMemo((id) => byPattern(index, id), PATTERN_MEMO_ENTRIES, PATTERN_MEMO_KEY);
    patternAnswers.set(index, memo);
  }
  return memo.get(principal) ?? undefined;
}

/** A mesh has a few hundred workloads at most; IDs longer than this are parsed every time. */
export const PATTERN_MEMO_ENTRIES = 512;
export const PATTERN_MEMO_KEY = 256;
const patternAnswers = new WeakMap<DestinationIndex, BoundedMemo<CompiledPolicy | null>>();

function byPattern(index: DestinationIndex, principal: string): CompiledPolicy | null {
  const parsed = parseSpiffeId(principal);
  if (!parsed.ok) return null;
  for (const { pattern, policy } of index.patterns)
    if (pattern.matches(parsed.value)) return policy;
  return null;
}

/** How many destination IDs the index's memo holds (tests: it stays bounded). */
export function rememberedDestinations(index: DestinationIndex): number {
  return patternAnswers.get(index)?.size ?? 0;
}

/**
 * Why a request must be denied whatever its caller: a Host that belongs to another policy, or
 * a route naming a policy that is not loaded or not the destination's. `policy` is the one the
 * destination selected, if any (its quarantine counts the denial). Allocated only when refusing.
 */
export class SelectionRefusal {
  constructor(
    readonly policy: CompiledPolicy | undefined,
    readonly code: 'host_mismatch' | 'route_mismatch',
    readonly reason: string,
  ) {}
}

/**
 * Chooses the policy of an HTTP request from what the caller cannot choose, strongest first:
 * the destination workload's identity (`destination.principal`), then the route's
 * `context_extensions` key. Only where neither exists (an edge gateway without mTLS) does
 * `Host` select, and then only a policy bound to no workload. `Host` is otherwise only checked:
 * it must not belong to another policy, and must be one of the policy's `hosts` when it lists any.
 */
export function selectHttpPolicy(
  index: SelectionIndex,
  request: NormalizedRequest,
): CompiledPolicy | undefined | SelectionRefusal {
  const principal = request.destinationPrincipal;
  const byDestination =
    principal === '' ? undefined : policyForDestination(index.destinations, principal);
  const named = request.contextExtensions[POLICY_CONTEXT_KEY];
  if (named !== undefined) {
    const policy = index.byName.get(named);
    if (policy === undefined)
      return new SelectionRefusal(
        byDestination,
        'route_mismatch',
        `the route names policy '${clip(named)}', which is not loaded`,
      );
    if (
      principal !== '' &&
      byDestination !== policy &&
      (byDestination !== undefined || policy.workloads.length > 0)
    ) {
      return new SelectionRefusal(
        byDestination,
        'route_mismatch',
        `the route names policy ${policy.name}, but destination ${clip(principal)} is guarded by ${byDestination ? `policy ${byDestination.name}` : 'no policy'}`,
      );
    }
    return checkHost(index, request.host, policy);
  }
  if (byDestination !== undefined) return checkHost(index, request.host, byDestination);

  const byHost = index.byHost.get(request.host);
  if (byHost !== undefined && byHost.workloads.length > 0) {
    // Never selected by a Host alone: the caller would be choosing which rules apply to it.
    return new SelectionRefusal(
      undefined,
      'host_mismatch',
      `host '${clip(request.host)}' belongs to policy ${byHost.name}, which is selected only by its workload identity or its route`,
    );
  }
  return byHost;
}

function checkHost(
  index: SelectionIndex,
  host: string,
  policy: CompiledPolicy,
): CompiledPolicy | SelectionRefusal {
  const owner = index.byHost.get(host);
  if (owner === policy || (owner === undefined && policy.hosts.length === 0)) return policy;
  const why =
    owner === undefined
      ? `is not one of the hosts of policy ${policy.name}`
      : `belongs to policy ${owner.name}, not ${policy.name}`;
  return new SelectionRefusal(policy, 'host_mismatch', `host '${clip(host)}' ${why}`);
}

function clip(text: string): string {
  return text.length <= 128 ? text : `${text.slice(0, 128)}…`;
}
