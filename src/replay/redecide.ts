import type { CheckInput } from '../envoy/check-input';
import type { GrantTracker } from '../grants/types';
import type { IdentityConfig } from '../identity/resolve';
import type { Decision } from '../pipeline/decision';
import { DecisionEngine } from '../pipeline/engine';
import { methodMatches, pathMatches } from '../policy/authorize';
import { conditionReads, type ConditionReads } from '../policy/features/condition-reads';
import type { CompiledPolicy, CompiledRule, PolicySet } from '../policy/types';
import type { QuarantineState } from '../quarantine/types';
import type { BucketStore } from '../ratelimit/types';
import type { ReplayRecord } from './record';

/**
 * Re-deciding a recorded request with another policy set, through the same DecisionEngine
 * that serves checks. What the record does not hold (state, bodies, header values, metadata)
 * is never filled in with a guess: a request whose new outcome would depend on it is
 * reported as "cannot tell" with the reason, found from the compiled rules involved.
 */

export type Replayed =
  | { kind: 'decided'; allowed: boolean; code: string; rule: string | null; policy: string | null }
  | { kind: 'cannot-tell'; reason: string; rule: string | null; policy: string | null }
  /** Recorded as malformed: denied before any policy is read, so no policy changes it. */
  | { kind: 'policy-independent' };

/** Conditions may read these from a record: they are kept whole. */
const RECORDED = new Set(['request.method', 'request.path', 'request.host', 'caller']);

/** Recorded outcomes that came from state, not from the policy text. */
const STATEFUL_CODES: Readonly<Record<string, string>> = {
  quarantined: 'the caller was quarantined; quarantine state is not in the audit log',
  rate_limited: 'the request was rate limited; bucket state is not in the audit log',
  limit_backend_error: 'the rate-limit backend failed; bucket state is not in the audit log',
};

/** Every trust domain is trusted: a recorded caller was verified when it was recorded. */
class AnyTrustDomain extends Set<string> {
  override has(): boolean {
    return true;
  }
}

const NO_QUARANTINE: QuarantineState = {
  kind: 'memory',
  current: () => undefined,
  recordDenial: () => Promise.resolve(undefined),
  list: () => Promise.resolve([]),
  release: () => Promise.resolve(undefined),
  ready: () => Promise.resolve(),
  close: () => Promise.resolve(),
  activeCounts: () => ({ enforce: 0, dryRun: 0 }),
};

const NO_GRANT_STATE: GrantTracker = {
  kind: 'memory',
  isDormant: () => false,
  used: () => undefined,
  setGrants: () => undefined,
  dormantCount: () => 0,
  renew: () => Promise.resolve(0),
  report: () => Promise.resolve([]),
  sync: () => Promise.resolve(),
  ready: () => Promise.resolve(),
  close: () => Promise.resolve(),
};

/** Buckets always have tokens: whether a limit would bite is state the log does not hold. */
const ADMITTING_STORE: BucketStore = {
  kind: 'replay',
  take: (_key, spec) => ({
    allowed: true,
    limit: spec.capacity,
    remaining: spec.capacity,
    resetSeconds: 0,
    retryAfterSeconds: 0,
  }),
  close: () => Promise.resolve(),
};

export class Redecider {
  private readonly engine: DecisionEngine;
  private readonly conditions = new WeakMap<CompiledRule, ConditionReads | null>();

  constructor(private readonly set: PolicySet) {
    const identity: IdentityConfig = { trustDomains: new AnyTrustDomain(), trustXfcc: false };
    this.engine = new DecisionEngine({
      policies: () => set,
      identity,
      store: ADMITTING_STORE,
      sink: { record: () => undefined },
      quarantine: NO_QUARANTINE,
      grants: NO_GRANT_STATE,
      now: () => 0,
    });
  }

  async redecide(record: ReplayRecord): Promise<Replayed> {
    if (record.code === 'malformed_request') return { kind: 'policy-independent' };
    if (record.caller === null && record.identitySource === 'jwt') {
      return {
        kind: 'cannot-tell',
        reason: 'a JWT-SVID was refused; which audiences it carried is not in the audit log',
        rule: null,
        policy: null,
      };
    }
    const decision = await this.engine.decide(checkRequestOf(record));
    const policy = decision.policy?.name ?? null;
    const unknown = this.unknownInput(record, decision);
    if (unknown !== undefined)
      return {
        kind: 'cannot-tell',
        reason: unknown.reason,
        rule: unknown.rule ?? decision.rule?.name ?? null,
        policy,
      };
    // The engine saw a peer principal; the recorded caller may have shown a bearer token.
    if (
      record.identitySource === 'jwt' &&
      decision.rule?.requireMtls &&
      decision.entry?.list === 'allow'
    ) {
      return {
        kind: 'decided',
        allowed: decision.policy?.mode === 'dry-run',
        code: 'mtls_required',
        rule: decision.rule.name,
        policy,
      };
    }
    return {
      kind: 'decided',
      allowed: decision.allowed,
      code: decision.code,
      rule: decision.rule?.name ?? null,
      policy,
    };
  }

  /** Why the new outcome depends on something the record does not hold, or undefined. */
  private unknownInput(
    record: ReplayRecord,
    decision: Decision,
  ): { reason: string; rule?: string } | undefined {
    if (record.caller === null) return undefined;
    const optOut = this.set.optOuts.get(record.caller);
    if (optOut && record.method !== 'TCP') {
      for (const refusal of optOut.refusals) {
        if (refusal.hosts !== null && !refusal.hosts.has(record.host ?? '')) continue;
        if (refusal.methods !== null && !refusal.methods.has(record.method ?? '')) continue;
        if (refusal.paths !== null && !refusal.paths.some((p) => p.matches(record.path ?? '')))
          continue;
        // Refused fields apply only to a request with a body.
        if (refusal.fields !== null && record.bodyPresent !== false)
          return {
            reason: `WorkloadPolicy ${optOut.name} refusal ${refusal.name} reads body fields, which the audit log does not keep`,
          };
        const untracked = refusal.headers?.find((h) => record.headerPresence?.[h] === undefined);
        if (untracked !== undefined)
          return {
            reason: `WorkloadPolicy ${optOut.name} refusal ${refusal.name} reads header ${untracked}, whose presence the record does not hold`,
          };
      }
    }
    if (
      decision.code === 'caller_opt_out' ||
      decision.policy === undefined ||
      record.method === 'TCP'
    )
      return undefined;
    const routeRules = this.routeRules(decision.policy, record);
    for (const rule of routeRules) {
      const why = rule.when === null ? undefined : this.conditionUnknown(rule, record);
      if (why !== undefined) return { reason: `rule ${rule.name}'s when: ${why}`, rule: rule.name };
    }
    // Quarantine outlives any policy edit: a quarantined caller stays denied until it ends.
    if (record.code === 'quarantined' && !record.allowed && decision.allowed)
      return { reason: STATEFUL_CODES['quarantined']! };
    const rule = decision.rule;
    if (rule === undefined || decision.entry?.list !== 'allow') return undefined;
    // The caller was admitted by a rule; what follows in the pipeline may need more than the record.
    if (record.identitySource === 'jwt' && !rule.requireMtls)
      return {
        reason: `rule ${rule.name} admits JWT-SVIDs by audience, and the token's audiences are not in the audit log`,
        rule: rule.name,
      };
    if (rule.grants[decision.entry.index])
      return {
        reason: `allow entry ${decision.entry.index} of rule ${rule.name} expires after disuse; grant usage is not in the audit log`,
        rule: rule.name,
      };
    if (rule.residency !== null) {
      const from = rule.residency.from;
      const present = record.headerPresence?.[from.name];
      // An absent region header denies for certain; any value, or a label or context, is unknown.
      if (!(from.kind === 'header' && present === false))
        return {
          reason: `rule ${rule.name}'s residency reads ${from.kind} ${from.name}, whose value the audit log does not keep`,
          rule: rule.name,
        };
    }
    if (rule.body !== null && decision.code !== 'residency_violation')
      return {
        reason: `rule ${rule.name} has a body contract; bodies are not in the audit log`,
        rule: rule.name,
      };
    // A recorded 429 through a rule that still limits: whether the bucket would have tokens is unknown.
    if (
      rule.rateLimit !== null &&
      !record.allowed &&
      (record.code === 'rate_limited' || record.code === 'limit_backend_error')
    )
      return { reason: STATEFUL_CODES[record.code]!, rule: rule.name };
    return undefined;
  }

  private routeRules(policy: CompiledPolicy, record: ReplayRecord): CompiledRule[] {
    const method = record.method ?? '';
    const path = record.path ?? '';
    return policy.rules.filter((r) => methodMatches(r, method) && pathMatches(r, path));
  }

  private conditionUnknown(rule: CompiledRule, record: ReplayRecord): string | undefined {
    let reads = this.conditions.get(rule);
    if (reads === undefined) {
      reads = conditionReads(rule.when!.source) ?? null;
      this.conditions.set(rule, reads);
    }
    if (reads === null) return 'cannot be analysed';
    for (const path of reads.paths) {
      if (RECORDED.has(path) || path === 'request.headers' || path === 'request.query') continue;
      return `reads ${path}, which the audit log does not keep`;
    }
    if (reads.opaque.headers || reads.values.headers.length > 0)
      return `reads request.headers${reads.values.headers.length > 0 ? `['${reads.values.headers[0]}']` : ''} values, which the audit log does not keep`;
    if (reads.opaque.query || reads.values.query.length > 0)
      return 'reads request.query values, which the audit log does not keep';
    const untracked = reads.presence.headers.find((h) => record.headerPresence?.[h] === undefined);
    if (untracked !== undefined)
      return `tests header ${untracked}, whose presence the record does not hold (the recorded policy set did not read it)`;
    if (
      reads.presence.query.length > 0 &&
      (record.queryKeys === undefined || record.queryKeysTruncated)
    )
      return 'tests query keys, and the record does not hold them all';
    return undefined;
  }
}

/**
 * The CheckRequest a record stands for: the recorded caller as a peer principal (it was
 * verified when recorded), the destination principal, method, host and path, the query's keys
 * with empty values and the tracked headers that were present with empty values.
 */
export function checkRequestOf(record: ReplayRecord): CheckInput {
  const source = record.caller !== null ? { principal: record.caller } : {};
  const destination = record.destination !== null ? { principal: record.destination } : {};
  if (record.method === 'TCP')
    return { attributes: { source, destination: { principal: record.host ?? '' } } };
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  // Without a caller the check ends at identity; a placeholder credential header must not start a JWT check.
  if (record.caller !== null && record.headerPresence) {
    for (const name in record.headerPresence) if (record.headerPresence[name]) headers[name] = '';
  }
  const keys = record.queryKeys ?? [];
  const query =
    keys.length === 0 ? '' : `?${keys.map((k) => `${encodeURIComponent(k)}=`).join('&')}`;
  return {
    attributes: {
      source,
      destination,
      request: {
        http: {
          host: record.host ?? '',
          method: record.method ?? '',
          path: `${record.path ?? ''}${query}`,
          headers,
        },
      },
    },
  };
}
