import { createHash } from 'node:crypto';
import { trackedHeaderNames } from '../../audit/request-shape';
import type { GrantRef } from '../../grants/types';
import type { SpiffePattern } from '../../identity/spiffe';
import { foldName } from '../../request/json-scan';
import type { CompiledWorkloadPolicy } from '../types';
import { IDENTITY_DENIALS } from '../../quarantine/types';
import { buildDestinationIndex } from '../features/select';
import { type PolicyDoc, type RuleDoc, type WorkloadPolicyDoc } from '../document/schema';
import type { CompiledPolicy, CompiledRateLimit, CompiledRule, PolicySet } from '../types';
import type { CompiledParts, RuleParts } from './validate';

export interface ValidDoc {
  readonly file: string;
  readonly doc: PolicyDoc;
  readonly parts: CompiledParts;
}

/** Assembles checked documents, and what checking them compiled, into the set the hot path reads. */
export function compilePolicySet(docs: readonly ValidDoc[], files: readonly string[]): PolicySet {
  const version = policySetVersion(docs.map((d) => d.doc));
  const policies: CompiledPolicy[] = [];
  const byHost = new Map<string, CompiledPolicy>();
  const byWorkload = new Map<string, CompiledPolicy>();
  const optOuts = new Map<string, CompiledWorkloadPolicy>();
  const destinationEntries: { policy: CompiledPolicy; workloads: readonly SpiffePattern[] }[] = [];
  for (const { file, doc, parts } of docs) {
    if (doc.kind === 'WorkloadPolicy') {
      optOuts.set(doc.spec.workload, compileWorkloadPolicy(file, doc, parts, version));
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
      tcp: doc.spec.tcp ? parts.tcp : null,
      rules: doc.spec.rules.map((rule, index) =>
        compileRule(name, contentHash, rule, index, parts.rules[index]!),
      ),
      quarantine:
        quarantine && parts.quarantine
          ? {
              policy: name,
              denials: quarantine.denials,
              windowMs: parts.quarantine.windowMs,
              durationMs: parts.quarantine.durationMs,
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
    destinationEntries.push({ policy, workloads: parts.workloads });
    for (const host of doc.spec.hosts ?? []) byHost.set(host, policy);
    for (const workload of doc.spec.workloads ?? [])
      if (!workload.includes('*')) byWorkload.set(workload, policy);
  }
  const grants = policies.flatMap((p) =>
    p.rules.flatMap((r) => r.grants.filter((g): g is GrantRef => g !== null)),
  );
  const auditHeaders = trackedHeaderNames(policies, optOuts.values());
  const destinations = buildDestinationIndex(destinationEntries);
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
  parts: CompiledParts,
  version: string,
): CompiledWorkloadPolicy {
  return {
    name: doc.metadata.name,
    workload: doc.spec.workload,
    mode: doc.spec.mode ?? 'enforce',
    refusals: doc.spec.refuse.map((r, i) => ({
      name: r.name,
      hosts: r.hosts ? new Set(r.hosts) : null,
      methods: r.methods ? new Set(r.methods) : null,
      paths: r.paths ? parts.refusalPaths[i]! : null,
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
  parts: RuleParts,
): CompiledRule {
  return {
    name: rule.name,
    index,
    methods: rule.methods ? new Set(rule.methods) : null,
    paths: rule.paths ? parts.paths : null,
    allow: parts.allow,
    grants: (rule.allow ?? []).map((entry, i) => {
      const maxIdleMs = parts.idleLimits[i];
      return typeof entry === 'object' && maxIdleMs !== undefined
        ? {
            policy: policyName,
            version: contentHash,
            rule: rule.name,
            entry: i,
            pattern: entry.caller,
            maxIdleMs,
          }
        : null;
    }),
    deny: parts.deny,
    when: parts.when ?? null,
    body: parts.body ?? null,
    residency:
      rule.residency && parts.regionFrom
        ? { regions: new Set(rule.residency.regions), from: parts.regionFrom }
        : null,
    rateLimit: rule.rateLimit
      ? compileRateLimit(policyName, rule.name, rule.rateLimit, parts)
      : null,
    requireMtls: rule.require === 'mtls',
    stripToken: rule.stripToken === true,
    audience: rule.audience,
  };
}

function compileRateLimit(
  policyName: string,
  ruleName: string,
  limit: NonNullable<RuleDoc['rateLimit']>,
  parts: RuleParts,
): CompiledRateLimit {
  return {
    capacity: limit.capacity,
    refillPerSecond: limit.refillPerSecond,
    cost: limit.cost ?? 1,
    per: parts.per,
    onBackendError: limit.onBackendError ?? 'allow',
    keyPrefix: `${policyName}|${ruleName}|`,
  };
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
