import { createHash } from 'node:crypto';
import { compileSpiffePattern, type SpiffePattern } from '../identity/spiffe';
import { compilePathPattern, type PathPattern } from './path-pattern';
import type { RuleDoc, ServicePolicyDoc } from './schema';
import type { CompiledPolicy, CompiledRateLimit, CompiledRule, PolicySet } from './types';
import { parseLimitKey } from './validate';

export interface ValidDoc {
  readonly file: string;
  readonly doc: ServicePolicyDoc;
}

/** Compiles validated documents into the immutable, indexed set the hot path reads. */
export function compilePolicySet(docs: readonly ValidDoc[], files: readonly string[]): PolicySet {
  const version = policySetVersion(docs.map((d) => d.doc));
  const policies: CompiledPolicy[] = [];
  const byHost = new Map<string, CompiledPolicy>();
  const byWorkload = new Map<string, CompiledPolicy>();
  for (const { file, doc } of docs) {
    const name = doc.metadata.name;
    const policy: CompiledPolicy = {
      name,
      mode: doc.spec.mode ?? 'enforce',
      hosts: doc.spec.hosts ?? [],
      workloads: doc.spec.workloads ?? [],
      audience: doc.spec.audience,
      ruleAudiences: [...new Set(doc.spec.rules.flatMap((r) => (r.audience !== undefined && r.audience !== doc.spec.audience ? [r.audience] : [])))],
      tcp: doc.spec.tcp
        ? {
            allow: (doc.spec.tcp.allow ?? []).map((p) => mustCompile<SpiffePattern>(compileSpiffePattern(p))),
            deny: (doc.spec.tcp.deny ?? []).map((p) => mustCompile<SpiffePattern>(compileSpiffePattern(p))),
          }
        : null,
      rules: doc.spec.rules.map((rule, index) => compileRule(name, rule, index)),
      file,
      label: `${name}@${version}`,
    };
    policies.push(policy);
    for (const host of doc.spec.hosts ?? []) byHost.set(host, policy);
    for (const workload of doc.spec.workloads ?? []) byWorkload.set(workload, policy);
  }
  return { version, policies, byHost, byWorkload, files, loadedAt: new Date() };
}

function compileRule(policyName: string, rule: RuleDoc, index: number): CompiledRule {
  return {
    name: rule.name,
    index,
    methods: rule.methods ? new Set(rule.methods) : null,
    paths: rule.paths ? rule.paths.map((p) => mustCompile(compilePathPattern(p))) : null,
    allow: (rule.allow ?? []).map((p) => mustCompile<SpiffePattern>(compileSpiffePattern(p))),
    deny: (rule.deny ?? []).map((p) => mustCompile<SpiffePattern>(compileSpiffePattern(p))),
    rateLimit: rule.rateLimit ? compileRateLimit(policyName, rule) : null,
    requireMtls: rule.require === 'mtls',
    stripToken: rule.stripToken === true,
    audience: rule.audience,
  };
}

function compileRateLimit(policyName: string, rule: RuleDoc): CompiledRateLimit {
  const limit = rule.rateLimit!;
  const per = parseLimitKey(limit.per ?? 'caller');
  if (!per) throw new Error(`invalid rateLimit.per in rule ${rule.name}`); // validate.ts rejects this first
  return {
    capacity: limit.capacity,
    refillPerSecond: limit.refillPerSecond,
    cost: limit.cost ?? 1,
    per,
    onBackendError: limit.onBackendError ?? 'allow',
    keyPrefix: `${policyName}|${rule.name}|`,
  };
}

function mustCompile<T = PathPattern>(result: { ok: true; value: T } | { ok: false; error: string }): T {
  // Validation has already rejected every pattern that fails here.
  if (!result.ok) throw new Error(result.error);
  return result.value;
}

/**
 * The content hash of the policy set: documents in canonical form (keys sorted), ordered by
 * policy name, so formatting, comments, key order and file layout do not change it.
 */
export function policySetVersion(docs: readonly ServicePolicyDoc[]): string {
  const sorted = [...docs].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  return createHash('sha256').update(canonicalJson(sorted)).digest('hex').slice(0, 16);
}

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
