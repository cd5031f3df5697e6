import type { SpiffeId } from '../identity/spiffe';
import type { NormalizedRequest } from '../request/normalize';
import { AmbiguousRequest } from '../request/ambiguity';
import {
  conditionActivation,
  conditionErrorClass,
  type ConditionActivation,
} from './features/conditions';
import type { CompiledPolicy, CompiledRule } from './types';

/** Which allow or deny entry decided, by index in the rule's list (coverage, explanations). */
export type AuthzOutcome =
  | { kind: 'allowed'; rule: CompiledRule; entry: number }
  | { kind: 'refused'; rule: CompiledRule; entry: number }
  | { kind: 'not-allowed' }
  | { kind: 'no-route' }
  /** A condition could not be evaluated (a missing key, a type mismatch): denied, never skipped. */
  | { kind: 'condition-error'; rule: CompiledRule; error: string }
  /** A condition needed a part of the request that upstreams could read differently. */
  | { kind: 'ambiguous'; rule: CompiledRule; reason: string };

/**
 * How authorize treated one rule, in the order it looked at them: what `gatehouse check`
 * prints, so the explanation is the decision's own. A rule after the one that decided is not
 * in the trace, because authorize did not look at it.
 */
export type RuleStep =
  | { readonly rule: CompiledRule; readonly step: 'method-differs' | 'path-differs' }
  | { readonly rule: CompiledRule; readonly step: 'condition-false' }
  /** The condition could not be evaluated, or read an ambiguous part of the request. */
  | { readonly rule: CompiledRule; readonly step: 'condition-failed'; readonly why: string }
  | { readonly rule: CompiledRule; readonly step: 'refused' | 'allowed'; readonly entry: number }
  | { readonly rule: CompiledRule; readonly step: 'not-allowed' }
  /** Its deny list does not name the caller; an earlier rule already allowed it. */
  | { readonly rule: CompiledRule; readonly step: 'not-refused' };

/**
 * May this caller do this. Every rule whose methods and paths match the request
 * is considered: a deny entry in any of them refuses the request, whatever allows it
 * elsewhere; otherwise the first matching rule whose allow list names the caller admits
 * it (and its rate limit applies). `trace`, when given, receives each step; without it
 * nothing is recorded or allocated.
 */
export function authorize(
  policy: CompiledPolicy,
  request: NormalizedRequest,
  caller: SpiffeId,
  trace?: RuleStep[],
): AuthzOutcome {
  let allowedBy: CompiledRule | undefined;
  let allowEntry = -1;
  let routeMatched = false;
  let activation: ConditionActivation | undefined;
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (!methodMatches(rule, request.method)) {
      trace?.push({ rule, step: 'method-differs' });
      continue;
    }
    if (!pathMatches(rule, request.path)) {
      trace?.push({ rule, step: 'path-differs' });
      continue;
    }
    if (rule.when !== null) {
      let holds: boolean;
      try {
        holds = rule.when.evaluate((activation ??= conditionActivation(request, caller)));
      } catch (err) {
        if (err instanceof AmbiguousRequest) {
          trace?.push({ rule, step: 'condition-failed', why: err.message });
          return { kind: 'ambiguous', rule, reason: err.message };
        }
        const error = conditionErrorClass(err);
        trace?.push({ rule, step: 'condition-failed', why: error });
        return { kind: 'condition-error', rule, error };
      }
      if (!holds) {
        trace?.push({ rule, step: 'condition-false' });
        continue;
      }
    }
    routeMatched = true;
    const refusedBy = firstMatch(rule.deny, caller);
    if (refusedBy !== -1) {
      trace?.push({ rule, step: 'refused', entry: refusedBy });
      return { kind: 'refused', rule, entry: refusedBy };
    }
    if (allowedBy === undefined) {
      allowEntry = firstMatch(rule.allow, caller);
      if (allowEntry !== -1) allowedBy = rule;
      trace?.push(
        allowEntry !== -1
          ? { rule, step: 'allowed', entry: allowEntry }
          : { rule, step: 'not-allowed' },
      );
    } else trace?.push({ rule, step: 'not-refused' });
  }
  if (allowedBy !== undefined) return { kind: 'allowed', rule: allowedBy, entry: allowEntry };
  return routeMatched ? { kind: 'not-allowed' } : { kind: 'no-route' };
}

/** TCP checks: the policy's connection-level lists, refusals first. */
export function authorizeTcp(
  policy: CompiledPolicy,
  caller: SpiffeId,
): { kind: 'allowed' | 'refused' | 'not-allowed' | 'no-tcp-rules'; entry: number } {
  if (policy.tcp === null) return { kind: 'no-tcp-rules', entry: -1 };
  const refusedBy = firstMatch(policy.tcp.deny, caller);
  if (refusedBy !== -1) return { kind: 'refused', entry: refusedBy };
  const allowedBy = firstMatch(policy.tcp.allow, caller);
  return allowedBy !== -1
    ? { kind: 'allowed', entry: allowedBy }
    : { kind: 'not-allowed', entry: -1 };
}

export function methodMatches(rule: CompiledRule, method: string): boolean {
  return rule.methods === null || rule.methods.has(method);
}

export function pathMatches(rule: CompiledRule, path: string): boolean {
  const paths = rule.paths;
  if (paths === null) return true;
  for (let i = 0; i < paths.length; i++) if (paths[i]!.matches(path)) return true;
  return false;
}

/** Index of the first pattern naming the caller, or -1. */
export function firstMatch(
  patterns: readonly { matches(id: SpiffeId): boolean }[],
  caller: SpiffeId,
): number {
  for (let i = 0; i < patterns.length; i++) if (patterns[i]!.matches(caller)) return i;
  return -1;
}
