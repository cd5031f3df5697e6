import { randomUUID } from 'node:crypto';
import { headerPresence } from '../audit/request-shape';
import { MemoryGrantTracker } from '../grants/memory';
import type { GrantRef, GrantTracker } from '../grants/types';
import { MemoryQuarantineState } from '../quarantine/memory';
import {
  defaultAudience,
  isMtlsSource,
  resolveIdentity,
  type IdentityConfig,
  type IdentityOutcome,
} from '../identity/resolve';
import { authorize, authorizeTcp } from '../policy/authorize';
import type { SpiffeId } from '../identity/spiffe';
import { formatDuration } from '../policy/duration';
import { findOptOut } from '../policy/features/opt-out';
import { bodyContractViolation } from '../policy/features/payload';
import { residencyViolation } from '../policy/features/residency';
import {
  policyForDestination,
  selectHttpPolicy,
  SelectionRefusal,
} from '../policy/features/select';
import type { CompiledPolicy, CompiledRule, PolicySet } from '../policy/types';
import { quarantineSubject, type QuarantineEntry, type QuarantineState } from '../quarantine/types';
import { applyLimit, bucketKey } from '../ratelimit/limit';
import type { BucketStore, LimitResult } from '../ratelimit/types';
import { bodyState } from '../request/body';
import { keyedHeaderAmbiguity } from '../request/ambiguity';
import { normalizeCheckRequest, type NormalizedRequest } from '../request/normalize';
import { ALLOWED, deny, type Decision, type Verdict } from './decision';

/** Where decisions go once made (the audit stage). */
export interface DecisionSink {
  record(decision: Decision): void;
}

export interface EngineDeps {
  /** The policy set in force; read once per check so a reload never splits a check. */
  readonly policies: () => PolicySet;
  readonly identity: IdentityConfig;
  readonly store: BucketStore;
  readonly sink: DecisionSink;
  /** Callers isolated after repeated denials; read synchronously, written off the answer's path. Default: in process. */
  readonly quarantine?: QuarantineState;
  /** Last use of grants that expire from disuse. Default: in process. */
  readonly grants?: GrantTracker;
  /** Epoch ms; tests move it. */
  readonly now?: () => number;
}

interface Context {
  /** performance.now() at the start: a float clock, cheaper per check than hrtime.bigint(). */
  readonly start: number;
  readonly set: PolicySet;
  request?: NormalizedRequest;
  identity?: IdentityOutcome;
  policy?: CompiledPolicy;
  rule?: CompiledRule;
  entry?: { list: 'allow' | 'deny'; index: number };
  limit?: LimitResult;
  limitBackendError?: string;
  /** A denial a dry-run source (WorkloadPolicy, quarantine) would have made; the check goes on. */
  softDenial?: Verdict;
  optOut?: string;
  /** The grant that admitted the caller, marked used once the check is allowed. */
  grant?: GrantRef;
  /** The verdict is the selected policy's own (its rules): the only kind its dry-run mode softens. */
  policyDecides?: boolean;
}

/**
 * The one decision function. The gRPC server, the CLI `check` command and the HTTP mode
 * are adapters around `decide`. Stages run in the SPEC's order and stop at the first
 * failure: normalise → identity → authorise → rate limit; then respond and audit.
 */
export class DecisionEngine {
  private readonly quarantine: QuarantineState;
  private readonly grants: GrantTracker;
  /** The set whose grants the tracker knows; a reload hands it the new ones on the first check. */
  private trackedSet: PolicySet | undefined;

  constructor(private readonly deps: EngineDeps) {
    this.quarantine = deps.quarantine ?? new MemoryQuarantineState({ onEvent: () => undefined });
    this.grants = deps.grants ?? new MemoryGrantTracker();
  }

  async decide(checkRequest: unknown): Promise<Decision> {
    const ctx: Context = { start: performance.now(), set: this.deps.policies() };
    if (ctx.set !== this.trackedSet) {
      this.trackedSet = ctx.set;
      this.grants.setGrants(ctx.set.grants, this.now());
    }
    let verdict: Verdict;
    let failed = false;
    try {
      verdict = await this.evaluate(checkRequest, ctx);
    } catch (err) {
      // A bug must never turn into an allow, not even under a dry-run policy.
      failed = true;
      // By class only: a message may quote the request, and the reason reaches the deny body.
      verdict = deny(
        403,
        'malformed_request',
        `internal error while deciding (${err instanceof Error ? err.name : typeof err})`,
      );
    }
    let wouldDeny: Verdict | undefined;
    const policy = ctx.policy;
    const denied = verdict;
    if (!verdict.allowed && !failed && ctx.policyDecides === true && policy?.mode === 'dry-run') {
      wouldDeny = verdict;
      verdict = ALLOWED;
    } else if (verdict.allowed && ctx.softDenial) {
      wouldDeny = ctx.softDenial;
    }
    if (verdict.allowed && ctx.grant !== undefined && ctx.identity?.ok)
      this.grants.used(ctx.grant, ctx.identity.id.id, this.now());
    // Counted off the answer's path: the check does not wait for the quarantine backend.
    const rule = policy?.quarantine;
    if (
      !denied.allowed &&
      !failed &&
      rule &&
      ctx.identity?.ok &&
      rule.countReasons.has(denied.code)
    ) {
      void this.quarantine.recordDenial(quarantineSubject(ctx.identity.id.id, rule), rule);
    }
    const decision = this.finish(ctx, verdict, wouldDeny);
    this.deps.sink.record(decision);
    return decision;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** The quarantine entry that isolates the caller from this request's destination, if any. */
  private isolation(caller: string, ctx: Context): QuarantineEntry | undefined {
    const now = this.now();
    const meshWide = this.quarantine.current(caller, now);
    if (meshWide !== undefined && isolatedHere(meshWide, ctx)) return meshWide;
    const rule = ctx.policy?.quarantine;
    return rule?.scope === 'policy'
      ? this.quarantine.current(quarantineSubject(caller, rule), now)
      : undefined;
  }

  /** A denial that a dry-run source only reports; an enforcing one decides. */
  private soft(ctx: Context, dryRun: boolean, verdict: Verdict): Verdict | undefined {
    if (!dryRun) return verdict;
    ctx.softDenial ??= verdict;
    return undefined;
  }

  private async evaluate(checkRequest: unknown, ctx: Context): Promise<Verdict> {
    const normalized = normalizeCheckRequest(checkRequest);
    if (!normalized.ok)
      return deny(403, 'malformed_request', `malformed request: ${normalized.reason}`);
    const request = (ctx.request = normalized.request);
    // Selected before identity: a JWT-SVID is verified against the destination's audiences.
    let refusal: SelectionRefusal | undefined;
    if (request.kind === 'http') {
      const selected = selectHttpPolicy(ctx.set, request);
      if (selected instanceof SelectionRefusal) refusal = selected;
      ctx.policy = selected instanceof SelectionRefusal ? selected.policy : selected;
    } else {
      ctx.policy = policyForDestination(ctx.set.destinations, request.host);
    }

    const identity = (ctx.identity = await resolveIdentity(
      request,
      this.deps.identity,
      ctx.policy,
    ));
    if (!identity.ok) return deny(401, identity.code, identity.reason);

    const policy = ctx.policy;
    const caller = identity.id;
    const quarantined = this.isolation(caller.id, ctx);
    if (quarantined) {
      const until = new Date(quarantined.until).toISOString();
      const verdict = this.soft(
        ctx,
        quarantined.dryRun,
        deny(
          403,
          'quarantined',
          `quarantined: caller ${caller.id} is isolated until ${until} after ${quarantined.denials} denials by policy ${quarantined.policy}`,
        ),
      );
      if (verdict) return verdict;
    }
    if (request.kind === 'tcp') {
      ctx.policyDecides = policy !== undefined;
      return this.authorizeConnection(policy, request.host, caller, ctx);
    }

    const optOuts = ctx.set.optOuts.get(caller.id);
    const optOut = optOuts === undefined ? undefined : findOptOut(optOuts, request);
    if (optOut) {
      ctx.optOut = `${optOut.policy.name}/${optOut.refusal.name}`;
      const verdict = this.soft(
        ctx,
        optOut.policy.mode === 'dry-run',
        deny(
          403,
          optOut.malformed ? 'malformed_request' : 'caller_opt_out',
          `caller ${caller.id} may not make this request: ${optOut.reason} (WorkloadPolicy ${optOut.policy.name})`,
        ),
      );
      if (verdict) return verdict;
    }
    if (refusal !== undefined) return deny(403, refusal.code, refusal.reason);
    if (policy === undefined)
      return deny(403, 'unknown_host', `no policy guards host '${clip(request.host)}'`);

    ctx.policyDecides = true;
    const authz = authorize(policy, request, caller);
    switch (authz.kind) {
      case 'ambiguous':
        ctx.rule = authz.rule;
        return deny(
          403,
          'malformed_request',
          `malformed request: ${authz.reason} (read by the condition of rule ${authz.rule.name} of policy ${policy.name})`,
        );
      case 'condition-error':
        ctx.rule = authz.rule;
        return deny(
          403,
          'condition_error',
          `condition of rule ${authz.rule.name} of policy ${policy.name} could not be evaluated: ${authz.error}`,
        );
      case 'no-route':
        return deny(
          403,
          'no_matching_rule',
          `no rule of policy ${policy.name} matches ${request.method} ${clip(request.path)}`,
        );
      case 'not-allowed':
        return deny(
          403,
          'caller_not_allowed',
          `caller ${identity.id.id} is not allowed by policy ${policy.name}`,
        );
      case 'refused':
        ctx.rule = authz.rule;
        ctx.entry = { list: 'deny', index: authz.entry };
        return deny(
          403,
          'caller_refused',
          `caller ${identity.id.id} is refused by rule ${authz.rule.name} of policy ${policy.name}`,
        );
      case 'allowed':
        ctx.rule = authz.rule;
        ctx.entry = { list: 'allow', index: authz.entry };
    }
    if (identity.audiences !== undefined) {
      // The token verified against some audience of this policy; it must carry this rule's.
      const wanted = authz.rule.audience ?? defaultAudience(this.deps.identity, policy.audience);
      if (wanted === undefined || !identity.audiences.includes(wanted)) {
        // A credential that does not fit is an identity failure, which dry-run never softens.
        ctx.policyDecides = false;
        return deny(
          401,
          'invalid_identity',
          `JWT-SVID: token audience does not include '${wanted ?? '(none configured)'}', required by rule ${authz.rule.name}`,
        );
      }
    }
    const rule = authz.rule;
    if (rule.requireMtls && !isMtlsSource(identity.source)) {
      return deny(
        403,
        'mtls_required',
        `rule ${rule.name} of policy ${policy.name} requires an mTLS identity, not a ${identity.source} credential`,
      );
    }
    const grant = rule.grants[authz.entry];
    if (grant) {
      if (this.grants.isDormant(grant, caller.id, this.now())) {
        return deny(
          403,
          'grant_dormant',
          `grant dormant: allow entry ${authz.entry} of rule ${rule.name} of policy ${policy.name} has not been used by ${caller.id} for ${formatDuration(grant.maxIdleMs)}; change the policy or renew it (gatehouse access renew)`,
        );
      }
      ctx.grant = grant;
    }
    if (rule.residency !== null) {
      const violation = residencyViolation(rule.residency, request);
      if (violation !== undefined)
        return deny(
          403,
          'residency_violation',
          `rule ${rule.name} of policy ${policy.name}: ${violation}`,
        );
    }
    if (rule.body !== null) {
      const violation = bodyContractViolation(rule.body, request);
      if (violation !== undefined)
        return deny(
          403,
          violation.malformed ? 'malformed_request' : 'payload_rejected',
          `rule ${rule.name} of policy ${policy.name}: ${violation.reason}`,
        );
    }

    const limit = rule.rateLimit;
    if (limit === null) return ALLOWED;
    const keyAmbiguity =
      limit.per.kind === 'header' ? keyedHeaderAmbiguity(limit.per.name, request) : undefined;
    if (keyAmbiguity !== undefined)
      return deny(
        403,
        'malformed_request',
        `malformed request: ${keyAmbiguity} (rule ${rule.name} of policy ${policy.name})`,
      );
    const outcome = await applyLimit(
      this.deps.store,
      limit,
      bucketKey(limit, request, identity.id.id),
    );
    if (outcome.kind === 'backend-error') {
      ctx.limitBackendError = outcome.error;
      return outcome.action === 'allow'
        ? ALLOWED
        : deny(429, 'limit_backend_error', `rate limit of rule ${authz.rule.name} is unavailable`);
    }
    ctx.limit = outcome.result;
    if (!outcome.result.allowed) {
      return deny(
        429,
        'rate_limited',
        `rate limit of rule ${authz.rule.name} exceeded; retry after ${outcome.result.retryAfterSeconds}s`,
      );
    }
    return ALLOWED;
  }

  private authorizeConnection(
    policy: CompiledPolicy | undefined,
    workload: string,
    caller: SpiffeId,
    ctx: Context,
  ): Verdict {
    if (policy === undefined)
      return deny(403, 'unknown_host', `no policy guards workload '${clip(workload)}' (TCP)`);
    const tcp = authorizeTcp(policy, caller);
    switch (tcp.kind) {
      case 'no-tcp-rules':
        return deny(
          403,
          'no_matching_rule',
          `policy ${policy.name} has no tcp rules for connections`,
        );
      case 'not-allowed':
        return deny(
          403,
          'caller_not_allowed',
          `caller ${caller.id} may not connect to ${workload} (policy ${policy.name})`,
        );
      case 'refused':
        ctx.entry = { list: 'deny', index: tcp.entry };
        return deny(
          403,
          'caller_refused',
          `caller ${caller.id} is refused by tcp.deny of policy ${policy.name}`,
        );
      case 'allowed':
        ctx.entry = { list: 'allow', index: tcp.entry };
        return ALLOWED;
    }
  }

  private finish(ctx: Context, verdict: Verdict, wouldDeny: Verdict | undefined): Decision {
    const request = ctx.request;
    const identity = ctx.identity;
    // Explicit properties, not `...verdict`: the spread made this the most expensive line of a check.
    return {
      allowed: verdict.allowed,
      status: verdict.status,
      code: verdict.code,
      reason: verdict.reason,
      id: randomUUID(),
      host: request?.host,
      method: request?.method,
      path: request?.path,
      requestId: request?.requestId,
      traceparent: request?.traceparent,
      caller: identity?.ok ? identity.id.id : undefined,
      identitySource: identity?.source,
      policy: ctx.policy,
      policyVersion: ctx.set.version,
      policyCommit: ctx.set.gitLabel,
      rule: ctx.rule,
      entry: ctx.entry,
      limit: ctx.limit,
      limitBackendError: ctx.limitBackendError,
      wouldDeny,
      optOut: ctx.optOut,
      spoofedHeaders: request?.spoofedHeaders ?? [],
      latencyMs: performance.now() - ctx.start,
      destination: request?.destinationPrincipal || undefined,
      query: request?.query || undefined,
      auditHeaders: ctx.set.auditHeaders,
      headerPresence:
        request === undefined ? 0 : headerPresence(ctx.set.auditHeaders, request.headers),
      bodyPresent: request !== undefined && bodyState(request).kind !== 'none',
    };
  }
}

/**
 * Whether an entry held under the caller itself covers this request: every destination when
 * its policy says `scope: mesh` (or is no longer loaded: a reload must not lift an isolation),
 * else only that policy's workloads (its scope changed since the entry was made).
 */
function isolatedHere(entry: QuarantineEntry, ctx: Context): boolean {
  const owner = ctx.set.byName.get(entry.policy);
  return owner === undefined || owner === ctx.policy || owner.quarantine?.scope !== 'policy';
}

function clip(text: string): string {
  return text.length <= 128 ? text : `${text.slice(0, 128)}…`;
}
