import { parseSpiffeId } from '../identity/spiffe';
import { firstMatch, methodMatches, pathMatches } from './authorize';
import type { CompiledPolicy } from './types';

export interface RuleExplanation {
  readonly rule: string;
  readonly methodMatches: boolean;
  readonly pathMatches: boolean;
  /** Entry that refused the caller, when the route matched. */
  readonly refusedBy?: string;
  /** Entry that allowed the caller, when the route matched. */
  readonly allowedBy?: string;
  readonly summary: string;
}

/**
 * Why each rule of a policy did or did not apply to a request. For `gatehouse check` only:
 * the hot path uses authorize(), which stops early and allocates nothing of this.
 */
export function explainRules(
  policy: CompiledPolicy,
  method: string,
  path: string,
  caller: string | undefined,
): RuleExplanation[] {
  const id = caller ? parseSpiffeId(caller) : undefined;
  return policy.rules.map((rule) => {
    const m = methodMatches(rule, method);
    const p = pathMatches(rule, path);
    const base = { rule: rule.name, methodMatches: m, pathMatches: p };
    if (!m)
      return { ...base, summary: `method ${method} not in [${[...rule.methods!].join(', ')}]` };
    if (!p)
      return {
        ...base,
        summary: `path ${path} matches none of [${rule.paths!.map((x) => x.source).join(', ')}]`,
      };
    // The condition's outcome is in the decision's reason; here it is shown as written.
    const when = rule.when ? `, when ${rule.when.source}` : '';
    if (!id?.ok) return { ...base, summary: `route matches${when}; no verified caller to compare` };
    const deny = firstMatch(rule.deny, id.value);
    if (deny !== -1)
      return {
        ...base,
        refusedBy: rule.deny[deny]!.source,
        summary: `route matches${when}; caller REFUSED by deny[${deny}] ${rule.deny[deny]!.source}`,
      };
    const allow = firstMatch(rule.allow, id.value);
    if (allow !== -1)
      return {
        ...base,
        allowedBy: rule.allow[allow]!.source,
        summary: `route matches${when}; caller allowed by allow[${allow}] ${rule.allow[allow]!.source}`,
      };
    return {
      ...base,
      summary: `route matches${when}; caller in none of allow [${rule.allow.map((x) => x.source).join(', ')}]`,
    };
  });
}
