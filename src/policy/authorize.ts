import type { SpiffeId } from '../identity/spiffe';
import type { NormalizedRequest } from '../request/normalize';
import type { CompiledPolicy, CompiledRule } from './types';

export type AuthzOutcome =
  | { kind: 'allowed'; rule: CompiledRule }
  | { kind: 'refused'; rule: CompiledRule }
  | { kind: 'not-allowed' }
  | { kind: 'no-route' };

/**
 * Stage 3: may this caller do this. Every rule whose methods and paths match the request
 * is considered: a deny entry in any of them refuses the request, whatever allows it
 * elsewhere; otherwise the first matching rule whose allow list names the caller admits
 * it (and its rate limit applies).
 */
export function authorize(policy: CompiledPolicy, request: NormalizedRequest, caller: SpiffeId): AuthzOutcome {
  let allowedBy: CompiledRule | undefined;
  let routeMatched = false;
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (!routeMatches(rule, request)) continue;
    routeMatched = true;
    if (anyMatch(rule.deny, caller)) return { kind: 'refused', rule };
    if (allowedBy === undefined && anyMatch(rule.allow, caller)) allowedBy = rule;
  }
  if (allowedBy !== undefined) return { kind: 'allowed', rule: allowedBy };
  return routeMatched ? { kind: 'not-allowed' } : { kind: 'no-route' };
}

function routeMatches(rule: CompiledRule, request: NormalizedRequest): boolean {
  if (rule.methods !== null && !rule.methods.has(request.method)) return false;
  const paths = rule.paths;
  if (paths === null) return true;
  for (let i = 0; i < paths.length; i++) if (paths[i]!.matches(request.path)) return true;
  return false;
}

function anyMatch(patterns: readonly { matches(id: SpiffeId): boolean }[], caller: SpiffeId): boolean {
  for (let i = 0; i < patterns.length; i++) if (patterns[i]!.matches(caller)) return true;
  return false;
}
