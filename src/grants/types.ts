/**
 * Grants that expire from disuse: an allow entry with `expiresAfterUnused` is denied with
 * reason `grant dormant` to a caller that has not used it for that long. These are the
 * usage-tracking state layer's types; the engine, CLI and admin API sit on top.
 */

/** One grant as a caller uses it: an allow entry of a rule of a policy at one policy content version. */
export interface GrantRef {
  readonly policy: string;
  /** The policy's content hash: a changed policy is a new grant. */
  readonly version: string;
  readonly rule: string;
  readonly entry: number;
  readonly pattern: string;
  readonly maxIdleMs: number;
}

export interface GrantUsage {
  readonly policy: string;
  readonly version: string;
  readonly rule: string;
  readonly entry: number;
  readonly pattern: string;
  /** '' for the one row of a grant nobody has used yet. */
  readonly caller: string;
  /** Epoch ms; undefined: never used. */
  readonly lastUsed: number | undefined;
  /** Epoch ms the clock started for this caller: the version's first sighting or the last renewal. */
  readonly since: number;
  readonly maxIdleMs: number;
  readonly dormant: boolean;
}

/** Which grants an operator renews: every field given must match; an empty filter renews everything. */
export interface GrantRenewFilter {
  readonly policy?: string;
  readonly rule?: string;
  /** Renew for this caller only; without it the renewal is grant-wide (every caller, used or not). */
  readonly caller?: string;
}

export interface GrantTracker {
  readonly kind: 'memory' | 'redis';
  /**
   * Hot path, synchronous, no I/O, no allocation beyond a key string: is this grant dormant for
   * this caller at `now`? Dormant when max(lastUsed, since) + maxIdleMs <= now. Unknown state
   * (not loaded yet from Redis) → not dormant.
   */
  isDormant(grant: GrantRef, caller: string, now: number): boolean;
  /** Hot path, synchronous: the caller used the grant (an allowed request). Buffered; flushed to the backend in the background. */
  used(grant: GrantRef, caller: string, now: number): void;
  /**
   * Tells the tracker which grants exist now (called at load and on every policy reload with
   * every allow entry that has expiresAfterUnused). Starts the clock ('since') of grants first
   * seen, so a new or changed policy starts fresh. Grants of versions no longer present are
   * forgotten locally.
   */
  setGrants(grants: readonly GrantRef[], now: number): void;
  /**
   * Operator renewal: restarts the clock for matching (policy, optional rule, optional caller)
   * grants; resolves how many (grant, caller) usages were renewed plus grants with no caller
   * usage (renewing a pattern with no usage yet restarts its 'since').
   */
  renew(filter: GrantRenewFilter, now: number): Promise<number>;
  /**
   * All usages of current grants (plus one row per grant nobody has used yet, caller ''),
   * sorted by lastUsed ascending (never-used first), for `access report`.
   */
  report(now: number): Promise<GrantUsage[]>;
  /** Synchronous, no I/O: `report` rows dormant at `now` (a caller's lapsed grant, or an allow entry nobody used in time) as this replica's table holds them (the metrics gauge). */
  dormantCount(now: number): number;
  /** Push buffered uses and pull others' (redis); no-op for memory. */
  sync(): Promise<void>;
  ready(): Promise<void>;
  close(): Promise<void>;
}
