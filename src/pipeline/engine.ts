import { randomUUID } from 'node:crypto';
import { headerPresence } from '../audit/request-shape';
import type { CheckInput } from '../envoy/check-input';
import { MemoryGrantTracker } from '../grants/memory';
import type { GrantTracker } from '../grants/types';
import type { IdentityConfig } from '../identity/resolve';
import type { RuleStep } from '../policy/authorize';
import type { PolicySet } from '../policy/types';
import { MemoryQuarantineState } from '../quarantine/memory';
import { quarantineSubject, type QuarantineState } from '../quarantine/types';
import type { BucketStore } from '../ratelimit/types';
import { bodyState } from '../request/body';
import type { CheckContext, EngineServices, Stage } from './context';
import { ALLOWED, deny, type Decision, type Verdict } from './decision';
import { authorization } from './stages/authorize';
import { bodyContract } from './stages/body-contract';
import { credentialFit } from './stages/credential-fit';
import { grantInUse } from './stages/grant';
import { identification } from './stages/identity';
import { normalization } from './stages/normalize';
import { optOuts } from './stages/opt-outs';
import { quarantine } from './stages/quarantine';
import { rateLimit } from './stages/rate-limit';
import { residency } from './stages/residency';
import { policySelection } from './stages/select-policy';

/**
 * The pipeline, in the order of the README's table "How a check is decided" (a test holds
 * the two together). The first stage to return a verdict decides; past the last, the check is
 * allowed. Respond (the adapters) and audit (the sink) follow.
 */
export const STAGES: readonly Stage[] = [
  normalization,
  policySelection,
  identification,
  quarantine,
  optOuts,
  authorization,
  credentialFit,
  grantInUse,
  residency,
  bodyContract,
  rateLimit,
];

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

/**
 * The one decision function. The gRPC server, the CLI `check` command and the HTTP mode
 * are adapters around `decide`. Around the stages it keeps the books: dry-run softening,
 * grant use, quarantine counts, and the decision handed to audit.
 */
export class DecisionEngine {
  private readonly services: EngineServices;
  /** The set whose grants the tracker knows; a reload hands it the new ones on the first check. */
  private trackedSet: PolicySet | undefined;

  constructor(private readonly deps: EngineDeps) {
    this.services = {
      identity: deps.identity,
      store: deps.store,
      quarantine: deps.quarantine ?? new MemoryQuarantineState({ onEvent: () => undefined }),
      grants: deps.grants ?? new MemoryGrantTracker(),
      now: () => (deps.now ? deps.now() : Date.now()),
    };
  }

  /** `trace`, when given, receives authorize's steps: the explanation `gatehouse check` prints. */
  async decide(checkRequest: CheckInput, trace?: RuleStep[]): Promise<Decision> {
    const services = this.services;
    const ctx: CheckContext = {
      start: performance.now(),
      set: this.deps.policies(),
      input: checkRequest,
      services,
      trace,
    };
    if (ctx.set !== this.trackedSet) {
      this.trackedSet = ctx.set;
      services.grants.setGrants(ctx.set.grants, services.now());
    }
    let verdict: Verdict;
    let failed = false;
    try {
      verdict = await runStages(ctx);
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
      services.grants.used(ctx.grant, ctx.identity.id.id, services.now());
    // Counted off the answer's path: the check does not wait for the quarantine backend.
    const rule = policy?.quarantine;
    if (
      !denied.allowed &&
      !failed &&
      rule &&
      ctx.identity?.ok &&
      rule.countReasons.has(denied.code)
    ) {
      void services.quarantine.recordDenial(quarantineSubject(ctx.identity.id.id, rule), rule);
    }
    const decision = finish(ctx, verdict, wouldDeny);
    this.deps.sink.record(decision);
    return decision;
  }
}

async function runStages(ctx: CheckContext): Promise<Verdict> {
  for (const stage of STAGES) {
    const outcome = stage.run(ctx);
    // Awaited only when the stage had to wait: a synchronous stage costs no microtask.
    const verdict = outcome instanceof Promise ? await outcome : outcome;
    if (verdict !== undefined) return verdict;
  }
  return ALLOWED;
}

function finish(ctx: CheckContext, verdict: Verdict, wouldDeny: Verdict | undefined): Decision {
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
