/**
 * Automated isolation: a caller that collects `denials` denials under one policy within
 * `windowMs` is quarantined for `durationMs`, and every request it makes is denied with
 * reason `quarantined` until the time ends or an operator releases it.
 *
 * This module is only the state: who is quarantined, and the events for entering and
 * leaving. The engine, admin API, audit and metrics are wired against QuarantineState.
 */

export interface QuarantineRule {
  readonly policy: string;
  readonly denials: number;
  readonly windowMs: number;
  readonly durationMs: number;
  readonly dryRun: boolean;
  /** The denial reasons that count (the engine decides; the state only counts what it is given). */
  readonly countReasons: ReadonlySet<string>;
  /**
   * `policy`: the caller is isolated from the workloads of the policy that tripped (the entry's
   * `policy`); `mesh`: from every destination. Read by the engine from the entry's policy.
   */
  readonly scope: QuarantineScope;
}

export type QuarantineScope = 'policy' | 'mesh';

/**
 * What the state keys an isolation by: the caller itself for a mesh-wide rule, the caller and
 * the policy for a policy-scoped one, so isolations by different policies never overwrite or
 * suppress each other. '#' never occurs in a SPIFFE ID, so the caller is always recoverable.
 */
export function quarantineSubject(
  caller: string,
  rule: Pick<QuarantineRule, 'policy' | 'scope'>,
): string {
  return rule.scope === 'mesh' ? caller : `${caller}#${rule.policy}`;
}

/** The caller of a subject (see quarantineSubject). */
export function subjectCaller(subject: string): string {
  const hash = subject.indexOf('#');
  return hash === -1 ? subject : subject.slice(0, hash);
}

/**
 * What the caller's identity decided: a denial any stranger could make a caller collect through
 * content (a bad body relayed for an end user, a condition, a dormant grant) counts only where
 * the policy lists it.
 */
export const IDENTITY_DENIALS: readonly string[] = [
  'caller_not_allowed',
  'caller_refused',
  'mtls_required',
  'host_mismatch',
];

/** The content-driven denials a policy may choose to count as well. */
export const CONTENT_DENIALS: readonly string[] = [
  'payload_rejected',
  'condition_error',
  'residency_violation',
  'caller_opt_out',
  'grant_dormant',
  'no_matching_rule',
];

export interface QuarantineEntry {
  readonly caller: string;
  readonly policy: string;
  /** epoch ms */
  readonly since: number;
  /** epoch ms */
  readonly until: number;
  readonly denials: number;
  readonly dryRun: boolean;
}

export type QuarantineEvent =
  | { readonly type: 'enter'; readonly entry: QuarantineEntry }
  | {
      readonly type: 'leave';
      readonly entry: QuarantineEntry;
      readonly cause: 'expired' | 'released';
    };

export interface QuarantineState {
  readonly kind: 'memory' | 'redis';
  /** Hot path, synchronous, no I/O: the caller's active entry (enforce entries win over dry-run ones), or undefined. */
  current(caller: string, now?: number): QuarantineEntry | undefined;
  /** One denial (or dry-run would-denial) by `rule.policy` for `caller`. Resolves to the entry when THIS denial put the caller into quarantine (exactly one replica mesh-wide gets it), else undefined. Never rejects: backend errors resolve undefined and are reported through onError. */
  recordDenial(caller: string, rule: QuarantineRule): Promise<QuarantineEntry | undefined>;
  list(): Promise<QuarantineEntry[]>;
  /** Operator release; resolves the released entry or undefined when the caller was not quarantined. Rejects on backend error. */
  release(caller: string): Promise<QuarantineEntry | undefined>;
  /** Becomes ready when the initial state is loaded (redis) — resolves immediately for memory. */
  ready(): Promise<void>;
  close(): Promise<void>;
  /** Synchronous, no I/O: active entries by kind as this instance sees them (the metrics gauge). */
  activeCounts(now?: number): QuarantineCounts;
}

export interface QuarantineCounts {
  readonly enforce: number;
  readonly dryRun: number;
}

export interface QuarantineStateOptions {
  /**
   * Called synchronously for every enter/leave this instance is responsible for (exactly one
   * instance mesh-wide per transition). An exception thrown here goes to onError; it never
   * undoes the state change.
   */
  readonly onEvent: (event: QuarantineEvent) => void;
  readonly onError?: (err: Error) => void;
  /** Called after a backend operation succeeds, so an episode of errors can be closed. */
  readonly onSuccess?: () => void;
  readonly now?: () => number;
}

/** Default cap on tracked (policy, caller) denial windows in process. */
export const DEFAULT_MAX_TRACKED_KEYS = 100_000;

/**
 * Whether an active entry already covers a denial under a rule of this kind: an enforce
 * entry covers everything, a dry-run entry covers only dry-run rules (an enforce rule
 * tripping must still upgrade it).
 */
export function coversRule(active: QuarantineEntry, ruleDryRun: boolean): boolean {
  return !active.dryRun || ruleDryRun;
}

/** The reason a rule cannot be applied, or undefined. Config validation should already refuse these. */
export function ruleProblem(rule: QuarantineRule): string | undefined {
  if (typeof rule.policy !== 'string' || rule.policy.length === 0)
    return 'quarantine rule has no policy';
  if (!Number.isSafeInteger(rule.denials) || rule.denials < 1)
    return `quarantine rule of ${rule.policy}: denials must be an integer >= 1`;
  if (!Number.isFinite(rule.windowMs) || rule.windowMs <= 0)
    return `quarantine rule of ${rule.policy}: windowMs must be > 0`;
  if (!Number.isFinite(rule.durationMs) || rule.durationMs <= 0)
    return `quarantine rule of ${rule.policy}: durationMs must be > 0`;
  return undefined;
}

/**
 * The identity of one denial window. Policy names cannot contain '|' (schema NAME pattern),
 * so the first '|' always separates policy from caller.
 */
export function windowKey(policy: string, caller: string): string {
  return `${policy}|${caller}`;
}

export function countActive(
  entries: Iterable<QuarantineEntry | undefined>,
  now: number,
): QuarantineCounts {
  let enforce = 0;
  let dryRun = 0;
  for (const e of entries) {
    if (e === undefined || e.until <= now) continue;
    if (e.dryRun) dryRun++;
    else enforce++;
  }
  return { enforce, dryRun };
}

export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
