import { createHash } from 'node:crypto';
import { trackedHeaderNames } from '../../audit/request-shape';
import { compileSpiffePattern, type SpiffePattern } from '../../identity/spiffe';
import type { GrantRef } from '../../grants/types';
import { foldName } from '../../request/json-scan';
import { compileCondition } from '../features/conditions';
import { parseDuration } from '../duration';
import type { CompiledWorkloadPolicy } from '../features/opt-out';
import { compilePathPattern, type PathPattern } from '../features/path-pattern';
import { compileBodyContract } from '../features/payload';
import { parseRegionSource } from '../features/residency';
import { IDENTITY_DENIALS } from '../../quarantine/types';
import { buildDestinationIndex } from '../features/select';
import {
  allowPattern,
  type PolicyDoc,
  type RuleDoc,
  type WorkloadPolicyDoc,
} from '../document/schema';
import type { CompiledPolicy, CompiledRateLimit, CompiledRule, PolicySet } from '../types';
import { parseLimitKey } from './validate';

export interface ValidDoc {
  readonly file: string;
  readonly doc: PolicyDoc;
}

/** Compiles validated documents into the immutable, indexed set the hot path reads. */
export function compilePolicySet(docs: readonly ValidDoc[], files: readonly string[]): PolicySet {
  const version = policySetVersion(docs.map((d) => d.doc));
  const policies: CompiledPolicy[] = [];
  const byHost = new Map<string, CompiledPolicy>();
  const byWorkload = new Map<string, CompiledPolicy>();
  const optOuts = new Map<string, CompiledWorkloadPolicy>();
  for (const { file, doc } of docs) {
    if (doc.kind === 'WorkloadPolicy') {
      optOuts.set(doc.spec.workload, compileWorkloadPolicy(file, doc, version));
      continue;
    }
    const name = doc.metadata.name;
    const contentHash = policySetVersion([doc]);
    const quarantine = doc.spec.quarantine;
    const mode = doc.spec.mode ?? 'enforce';
    const policy: CompiledPolicy = {
      name,
      mode,
      hosts: doc.spec.hosts ?? [],
      workloads: doc.spec.workloads ?? [],
      audience: doc.spec.audience,
      ruleAudiences: [
        ...new Set(
          doc.spec.rules.flatMap((r) =>
            r.audience !== undefined && r.audience !== doc.spec.audience ? [r.audience] : [],
          ),
        ),
      ],
      tcp: doc.spec.tcp
        ? {
            allow: (doc.spec.tcp.allow ?? []).map((p) =>
              mustCompile<SpiffePattern>(compileSpiffePattern(p)),
            ),
            deny: (doc.spec.tcp.deny ?? []).map((p) =>
              mustCompile<SpiffePattern>(compileSpiffePattern(p)),
            ),
          }
        : null,
      rules: doc.spec.rules.map((rule, index) => compileRule(name, contentHash, rule, index)),
      quarantine: quarantine
        ? {
            policy: name,
            denials: quarantine.denials,
            windowMs: mustDuration(quarantine.window),
            durationMs: mustDuration(quarantine.duration),
            dryRun: mode === 'dry-run',
            countReasons: new Set([...IDENTITY_DENIALS, ...(quarantine.countReasons ?? [])]),
            scope: quarantine.scope ?? 'policy',
          }
        : null,
      file,
      label: `${name}@${version}`,
      contentHash,
    };
    policies.push(policy);
    for (const host of doc.spec.hosts ?? []) byHost.set(host, policy);
    for (const workload of doc.spec.workloads ?? [])
      if (!workload.includes('*')) byWorkload.set(workload, policy);
  }
  const grants = policies.flatMap((p) =>
    p.rules.flatMap((r) => r.grants.filter((g): g is GrantRef => g !== null)),
  );
  const auditHeaders = trackedHeaderNames(policies, optOuts.values());
  const destinations = buildDestinationIndex(policies);
  const byName = new Map(policies.map((p) => [p.name, p]));
  return {
    version,
    policies,
    byHost,
    byWorkload,
    destinations,
    byName,
    optOuts,
    grants,
    auditHeaders,
    files,
    loadedAt: new Date(),
  };
}

function compileWorkloadPolicy(
  file: string,
  doc: WorkloadPolicyDoc,
  version: string,
): CompiledWorkloadPolicy {
  return {
    name: doc.metadata.name,
    workload: doc.spec.workload,
    mode: doc.spec.mode ?? 'enforce',
    refusals: doc.spec.refuse.map((r) => ({
      name: r.name,
      hosts: r.hosts ? new Set(r.hosts) : null,
      methods: r.methods ? new Set(r.methods) : null,
      paths: r.paths ? r.paths.map((p) => mustCompile(compilePathPattern(p))) : null,
      headers: r.headers ?? null,
      fields: r.fields ? r.fields.map((f) => f.split('.')) : null,
      foldedFields: r.fields ? r.fields.map((f) => f.split('.').map(foldName)) : null,
    })),
    file,
    label: `${doc.metadata.name}@${version}`,
  };
}

function compileRule(
  policyName: string,
  contentHash: string,
  rule: RuleDoc,
  index: number,
): CompiledRule {
  const allow = rule.allow ?? [];
  return {
    name: rule.name,
    index,
    methods: rule.methods ? new Set(rule.methods) : null,
    paths: rule.paths ? rule.paths.map((p) => mustCompile(compilePathPattern(p))) : null,
    allow: allow.map((p) => mustCompile<SpiffePattern>(compileSpiffePattern(allowPattern(p)))),
    grants: allow.map((entry, i) =>
      typeof entry === 'object' && entry.expiresAfterUnused !== undefined
        ? {
            policy: policyName,
            version: contentHash,
            rule: rule.name,
            entry: i,
            pattern: entry.caller,
            maxIdleMs: mustDuration(entry.expiresAfterUnused),
          }
        : null,
    ),
    deny: (rule.deny ?? []).map((p) => mustCompile<SpiffePattern>(compileSpiffePattern(p))),
    when: rule.when !== undefined ? mustCompile(compileCondition(rule.when)) : null,
    body: rule.body ? mustCompile(compileBodyContract(rule.body)) : null,
    residency: rule.residency
      ? {
          regions: new Set(rule.residency.regions),
          from: mustDefined(parseRegionSource(rule.residency.regionFrom)),
        }
      : null,
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

function mustCompile<T = PathPattern>(
  result: { ok: true; value: T } | { ok: false; error: string },
): T {
  // Validation has already rejected every pattern that fails here.
  if (!result.ok) throw new Error(result.error);
  return result.value;
}

function mustDuration(text: string): number {
  return mustDefined(parseDuration(text));
}

function mustDefined<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('validation let an invalid value through');
  return value;
}

/**
 * The content hash of the policy set: documents in canonical form (keys sorted), ordered by
 * policy name, so formatting, comments, key order and file layout do not change it.
 */
export function policySetVersion(docs: readonly PolicyDoc[]): string {
  const sorted = [...docs].sort((a, b) =>
    a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0,
  );
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
