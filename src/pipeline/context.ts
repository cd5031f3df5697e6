import type { CheckInput } from '../envoy/check-input';
import type { GrantRef, GrantTracker } from '../grants/types';
import type { IdentityConfig, IdentityOutcome } from '../identity/resolve';
import type { RuleStep } from '../policy/authorize';
import type { CompiledPolicy, CompiledRule, PolicySet } from '../policy/types';
import type { SelectionRefusal } from '../policy/features/select';
import type { QuarantineState } from '../quarantine/types';
import type { BucketStore, LimitResult } from '../ratelimit/types';
import type { NormalizedRequest } from '../request/normalize';
import type { Verdict } from './decision';

/** What the stages read besides the request: made once per engine, shared by every check. */
export interface EngineServices {
  readonly identity: IdentityConfig;
  readonly store: BucketStore;
  readonly quarantine: QuarantineState;
  readonly grants: GrantTracker;
  /** Epoch ms. */
  readonly now: () => number;
}

/** One check as the stages fill it in; created once per check. */
export interface CheckContext {
  /** performance.now() at the start: a float clock, cheaper per check than hrtime.bigint(). */
  readonly start: number;
  readonly set: PolicySet;
  /** The CheckRequest as its producer handed it over; only the normalise stage reads it. */
  readonly input: CheckInput;
  readonly services: EngineServices;
  request?: NormalizedRequest;
  /** Host or route refused the destination's policy; reported after the caller's own opt-outs. */
  selectionRefusal?: SelectionRefusal;
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
  /** Where authorize records its steps for `gatehouse check`; absent on the serving path. */
  readonly trace: RuleStep[] | undefined;
}

/** A verdict ends the check (ALLOWED included); nothing lets the next stage run. */
export type StageOutcome = Verdict | undefined;

/**
 * One step of the pipeline: a plain object made once, so a check allocates no closures to run
 * it. Only stages that must wait (a JWT-SVID's signature, the bucket store) return a promise.
 */
export interface Stage {
  /** The module's file name under src/pipeline/stages/, as the README's table names it. */
  readonly name: string;
  run(ctx: CheckContext): StageOutcome | Promise<StageOutcome>;
}

/**
 * The fields an earlier stage fills in. A stage placed before the one that fills them is a bug:
 * it throws, and the engine turns the throw into a denial, never an allow.
 */
export function requestOf(ctx: CheckContext): NormalizedRequest {
  if (ctx.request === undefined) throw new StageOrderError('request');
  return ctx.request;
}

export function callerOf(ctx: CheckContext): Extract<IdentityOutcome, { ok: true }> {
  const identity = ctx.identity;
  if (identity === undefined || !identity.ok) throw new StageOrderError('caller');
  return identity;
}

export function policyOf(ctx: CheckContext): CompiledPolicy {
  if (ctx.policy === undefined) throw new StageOrderError('policy');
  return ctx.policy;
}

/** The rule that admitted the caller. */
export function admittedBy(ctx: CheckContext): CompiledRule {
  if (ctx.rule === undefined || ctx.entry?.list !== 'allow') throw new StageOrderError('rule');
  return ctx.rule;
}

/** Which allow entry of that rule admitted the caller. */
export function admittingEntry(ctx: CheckContext): number {
  if (ctx.entry?.list !== 'allow') throw new StageOrderError('rule');
  return ctx.entry.index;
}

export class StageOrderError extends Error {
  constructor(field: string) {
    super(`a stage ran before the one that sets the ${field}`);
    this.name = 'StageOrderError';
  }
}

/** A denial that a dry-run source only reports; an enforcing one decides. */
export function soft(ctx: CheckContext, dryRun: boolean, verdict: Verdict): StageOutcome {
  if (!dryRun) return verdict;
  ctx.softDenial ??= verdict;
  return undefined;
}

/** Request text quoted in a reason, bounded. */
export function clip(text: string): string {
  return text.length <= 128 ? text : `${text.slice(0, 128)}…`;
}
