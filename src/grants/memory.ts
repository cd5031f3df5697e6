import { GrantTable, type CallerState } from './table';
import type { GrantRef, GrantRenewFilter, GrantTracker, GrantUsage } from './types';

export interface MemoryGrantTrackerOptions {
  /** Bound on tracked (grant, caller) pairs; default 200,000. */
  readonly maxPairs?: number;
  /** Told when pairs are dropped to stay within maxPairs (at most once an hour of `now` time). */
  readonly onWarn?: (message: string) => void;
}

const WARN_EVERY_MS = 60 * 60 * 1000;

/**
 * Grant usage for a single replica: state lives and dies with the process, so a restart starts
 * every clock afresh (lenient, never a false denial). For several replicas use the Redis tracker.
 */
export class MemoryGrantTracker implements GrantTracker {
  readonly kind = 'memory' as const;
  private readonly table: GrantTable;
  private evicted = 0;
  private lastWarnAt: number | undefined;

  constructor(options: MemoryGrantTrackerOptions = {}) {
    const maxPairs = options.maxPairs ?? 200_000;
    // Callers are authenticated identities, but a wildcard grant (spiffe://td/**) admits as many
    // distinct IDs as the trust domain issues, so the pairs need a bound. Dropping the least
    // recently used pair forgets its last use: that caller's clock falls back to the grant's
    // 'since', which may deny it early; hence the warning.
    this.table = new GrantTable({
      loadedOnSight: true,
      maxPairs,
      onEvict: (pair: CallerState, now: number) => {
        this.evicted++;
        if (this.lastWarnAt !== undefined && now - this.lastWarnAt < WARN_EVERY_MS) return;
        this.lastWarnAt = now;
        options.onWarn?.(
          `grant usage tracker is over its bound of ${maxPairs} (grant, caller) pairs: dropped the least recently used ` +
            `(${this.evicted} so far, latest ${pair.caller} on ${pair.grant.version.policy}/${pair.grant.ref.rule}); ` +
            `callers whose use was dropped may be found dormant early`,
        );
      },
    });
  }

  /** Tracked (grant, caller) pairs. */
  get pairs(): number {
    return this.table.pairCount;
  }

  isDormant(grant: GrantRef, caller: string, now: number): boolean {
    return this.table.isDormant(grant, caller, now);
  }

  used(grant: GrantRef, caller: string, now: number): void {
    // A grant setGrants does not know is one a reload just removed: recording it would bring
    // the old version back.
    const state = this.table.lookup(grant);
    if (state !== undefined) this.table.touch(state, caller, now);
  }

  setGrants(grants: readonly GrantRef[], now: number): void {
    this.table.setGrants(grants, now);
  }

  async renew(filter: GrantRenewFilter, now: number): Promise<number> {
    const { targets, count } = this.table.planRenewal(filter);
    this.table.applyRenewal(targets, now);
    return count;
  }

  async report(now: number): Promise<GrantUsage[]> {
    return this.table.rows(now);
  }

  dormantCount(now: number): number {
    return this.table.dormantCount(now);
  }

  async sync(): Promise<void> {}

  async ready(): Promise<void> {}

  async close(): Promise<void> {}
}
