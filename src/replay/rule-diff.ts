import type { CompiledRule, PolicySet } from '../policy/types';

export interface RuleDiff {
  /** `policy/rule`, sorted. */
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
}

/** Rule names added, removed and changed from `base` (the policies the log was recorded under) to `next`. */
export function diffRules(base: PolicySet, next: PolicySet): RuleDiff {
  const before = fingerprints(base);
  const after = fingerprints(next);
  const added: string[] = [];
  const changed: string[] = [];
  for (const [name, print] of after) {
    const old = before.get(name);
    if (old === undefined) added.push(name);
    else if (old !== print) changed.push(name);
  }
  const removed = [...before.keys()].filter((name) => !after.has(name));
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}

function fingerprints(set: PolicySet): Map<string, string> {
  const out = new Map<string, string>();
  for (const policy of set.policies) {
    // What selects the policy and how it enforces belongs to each of its rules' meaning.
    const scope = JSON.stringify([
      policy.mode,
      [...policy.hosts].sort(),
      [...policy.workloads].sort(),
      policy.audience ?? null,
      policy.quarantine,
    ]);
    for (const rule of policy.rules)
      out.set(`${policy.name}/${rule.name}`, `${scope}${ruleFingerprint(rule)}`);
  }
  return out;
}

function ruleFingerprint(rule: CompiledRule): string {
  return JSON.stringify([
    rule.index,
    rule.methods ? [...rule.methods].sort() : null,
    rule.paths?.map((p) => p.source) ?? null,
    rule.allow.map((p) => p.source),
    rule.grants.map((g) => g?.maxIdleMs ?? null),
    rule.deny.map((p) => p.source),
    rule.when?.source ?? null,
    rule.body !== null
      ? JSON.stringify(rule.body, (_k, v: unknown) =>
          v instanceof Set
            ? [...(v as Set<unknown>)]
            : typeof v === 'function'
              ? (v as { schema?: unknown }).schema
              : v,
        )
      : null,
    rule.residency ? [[...rule.residency.regions].sort(), rule.residency.from] : null,
    rule.rateLimit,
    rule.requireMtls,
    rule.stripToken,
    rule.audience ?? null,
  ]);
}
