import { compileSpiffePattern, parseSpiffeId } from '../identity/spiffe';
import type { GrantRef, GrantRenewFilter, GrantUsage } from './types';

/**
 * The grant state both trackers answer from: the whole state of the memory tracker, the local
 * mirror of the Redis one. A version (policy name + content hash) owns its grants, a grant owns
 * its callers; the clock of a (grant, caller) pair starts at the latest of the version's first
 * sighting, the grant-wide renewal, the caller's renewal and the caller's last use.
 */

export interface VersionState {
  readonly policy: string;
  readonly version: string;
  /** `policy@version`. */
  readonly key: string;
  /** When the version was first seen: by this process, or (Redis) by the first replica. */
  since: number;
  /** False until the backend's state arrived; an unloaded version is never dormant. */
  loaded: boolean;
  /** Set when setGrants dropped the version, so stale references stop answering. */
  removed: boolean;
  /** The largest maxIdleMs of its grants: how long its state must outlive disuse. */
  maxIdleMs: number;
  /** By grant id (`rule|entry`). */
  readonly grants: Map<string, GrantState>;
}

export interface GrantState {
  readonly ref: GrantRef;
  readonly version: VersionState;
  /** `rule|entry`: rule names cannot contain '|', so the id splits back unambiguously. */
  readonly id: string;
  /** Grant-wide renewal: restarts the clock of every caller, known or not. */
  renewed: number | undefined;
  callers: Map<string, CallerState>;
}

export interface CallerState {
  readonly grant: GrantState;
  readonly caller: string;
  lastUsed: number | undefined;
  renewed: number | undefined;
}

/** A renewal the table would apply: for one caller, or grant-wide when caller is undefined. */
export interface RenewalTarget {
  readonly grant: GrantState;
  readonly caller: string | undefined;
}

export interface GrantTableOptions {
  /** Whether versions are usable as soon as they are seen (memory) or only once loaded (Redis). */
  readonly loadedOnSight: boolean;
  /** Bound on (grant, caller) pairs; the least recently used go first. Unbounded when absent. */
  readonly maxPairs?: number;
  readonly onEvict?: (pair: CallerState, now: number) => void;
}

export function grantKey(grant: Pick<GrantRef, 'policy' | 'version' | 'rule' | 'entry'>): string {
  return `${grant.policy}@${grant.version}|${grant.rule}|${grant.entry}`;
}

export class GrantTable {
  private readonly versionsByKey = new Map<string, VersionState>();
  private readonly byKey = new Map<string, GrantState>();
  // The engine normally passes the very GrantRef objects it gave setGrants: then the hot path
  // finds the state without building the key string at all.
  private readonly byRef = new WeakMap<GrantRef, GrantState>();
  // Insertion order is recency order: a use deletes and re-adds its pair, eviction takes the first.
  private readonly lru: Set<CallerState> | undefined;

  constructor(private readonly options: GrantTableOptions) {
    if (options.maxPairs !== undefined) this.lru = new Set();
  }

  get pairCount(): number {
    if (this.lru !== undefined) return this.lru.size;
    let n = 0;
    for (const v of this.versionsByKey.values())
      for (const g of v.grants.values()) n += g.callers.size;
    return n;
  }

  versions(): IterableIterator<VersionState> {
    return this.versionsByKey.values();
  }

  lookup(grant: GrantRef): GrantState | undefined {
    const byRef = this.byRef.get(grant);
    if (byRef !== undefined && !byRef.version.removed) return byRef;
    return this.byKey.get(grantKey(grant));
  }

  /** Returns the versions seen for the first time and the ones dropped. */
  setGrants(
    grants: readonly GrantRef[],
    now: number,
  ): { added: VersionState[]; removed: VersionState[] } {
    const added: VersionState[] = [];
    const keptGrants = new Set<GrantState>();
    for (const ref of grants) {
      const vkey = `${ref.policy}@${ref.version}`;
      let version = this.versionsByKey.get(vkey);
      if (version === undefined) {
        version = {
          policy: ref.policy,
          version: ref.version,
          key: vkey,
          since: now,
          loaded: this.options.loadedOnSight,
          removed: false,
          maxIdleMs: ref.maxIdleMs,
          grants: new Map(),
        };
        this.versionsByKey.set(vkey, version);
        added.push(version);
      }
      const id = `${ref.rule}|${ref.entry}`;
      let grant = version.grants.get(id);
      if (grant === undefined) {
        grant = { ref, version, id, renewed: undefined, callers: new Map() };
        version.grants.set(id, grant);
        this.byKey.set(grantKey(ref), grant);
        if (ref.maxIdleMs > version.maxIdleMs) version.maxIdleMs = ref.maxIdleMs;
      }
      this.byRef.set(ref, grant);
      keptGrants.add(grant);
    }
    const removed: VersionState[] = [];
    for (const version of [...this.versionsByKey.values()]) {
      for (const grant of [...version.grants.values()]) {
        if (!keptGrants.has(grant)) this.forgetGrant(grant);
      }
      if (version.grants.size === 0) {
        version.removed = true;
        this.versionsByKey.delete(version.key);
        removed.push(version);
      }
    }
    return { added, removed };
  }

  isDormant(grant: GrantRef, caller: string, now: number): boolean {
    const state = this.lookup(grant);
    if (state === undefined || !state.version.loaded) return false;
    return clockStart(state, state.callers.get(caller)) + state.ref.maxIdleMs <= now;
  }

  /** Records a use in the table (creating the pair); the pair becomes the most recently used. */
  touch(grant: GrantState, caller: string, now: number): CallerState {
    const pair = this.pair(grant, caller, now);
    if (pair.lastUsed === undefined || now > pair.lastUsed) pair.lastUsed = now;
    return pair;
  }

  /** The pair, created if missing, moved to the recent end of the bound. */
  pair(grant: GrantState, caller: string, now: number): CallerState {
    let pair = grant.callers.get(caller);
    if (pair === undefined) {
      pair = { grant, caller, lastUsed: undefined, renewed: undefined };
      grant.callers.set(caller, pair);
      if (this.lru !== undefined) {
        this.lru.add(pair);
        this.evictOver(now);
      }
    } else if (this.lru !== undefined) {
      this.lru.delete(pair);
      this.lru.add(pair);
    }
    return pair;
  }

  /**
   * What a renewal covers, without applying it: with a caller, that caller's pair on each
   * matching grant it has state on or its pattern admits (renewing a caller that never used
   * a grant is how an operator lifts its dormancy); without, every matching grant as a whole.
   * `count` is the number of (grant, caller) usages renewed plus grants with no usage.
   */
  planRenewal(filter: GrantRenewFilter): { targets: RenewalTarget[]; count: number } {
    const targets: RenewalTarget[] = [];
    let count = 0;
    const callerId = filter.caller === undefined ? undefined : parseSpiffeId(filter.caller);
    for (const version of this.versionsByKey.values()) {
      if (filter.policy !== undefined && version.policy !== filter.policy) continue;
      for (const grant of version.grants.values()) {
        if (filter.rule !== undefined && grant.ref.rule !== filter.rule) continue;
        if (filter.caller === undefined) {
          targets.push({ grant, caller: undefined });
          count += Math.max(1, grant.callers.size);
          continue;
        }
        let admitted = grant.callers.has(filter.caller);
        if (!admitted && callerId?.ok) {
          const pattern = compileSpiffePattern(grant.ref.pattern);
          admitted = pattern.ok && pattern.value.matches(callerId.value);
        }
        if (admitted) {
          targets.push({ grant, caller: filter.caller });
          count++;
        }
      }
    }
    return { targets, count };
  }

  applyRenewal(targets: readonly RenewalTarget[], now: number): void {
    for (const { grant, caller } of targets) {
      if (caller === undefined) {
        if (grant.renewed === undefined || now > grant.renewed) grant.renewed = now;
      } else {
        const pair = this.pair(grant, caller, now);
        if (pair.renewed === undefined || now > pair.renewed) pair.renewed = now;
      }
    }
  }

  /** Report rows of every current, loaded grant; see GrantTracker.report. */
  dormantCount(now: number): number {
    let count = 0;
    for (const row of this.rows(now)) if (row.dormant) count++;
    return count;
  }

  rows(now: number): GrantUsage[] {
    const rows: GrantUsage[] = [];
    for (const version of this.versionsByKey.values()) {
      if (!version.loaded) continue;
      for (const grant of version.grants.values()) {
        let anyUse = false;
        for (const pair of grant.callers.values()) {
          if (pair.lastUsed !== undefined) anyUse = true;
          rows.push(usageRow(grant, pair, now));
        }
        // Renewed-only callers have rows of their own, but the grant still has had no use.
        if (!anyUse) rows.push(usageRow(grant, undefined, now));
      }
    }
    return rows.sort(byLastUse);
  }

  private forgetGrant(grant: GrantState): void {
    grant.version.grants.delete(grant.id);
    this.byKey.delete(grantKey(grant.ref));
    if (this.lru !== undefined) for (const pair of grant.callers.values()) this.lru.delete(pair);
  }

  private evictOver(now: number): void {
    const lru = this.lru!;
    const max = this.options.maxPairs!;
    while (lru.size > max) {
      const oldest = lru.values().next().value as CallerState;
      lru.delete(oldest);
      oldest.grant.callers.delete(oldest.caller);
      this.options.onEvict?.(oldest, now);
    }
  }
}

/** The renewal that the clock of a pair counts from (ignoring its last use). */
export function sinceFor(grant: GrantState, pair: CallerState | undefined): number {
  let since = grant.version.since;
  if (grant.renewed !== undefined && grant.renewed > since) since = grant.renewed;
  if (pair?.renewed !== undefined && pair.renewed > since) since = pair.renewed;
  return since;
}

function clockStart(grant: GrantState, pair: CallerState | undefined): number {
  const since = sinceFor(grant, pair);
  const used = pair?.lastUsed;
  return used !== undefined && used > since ? used : since;
}

function usageRow(grant: GrantState, pair: CallerState | undefined, now: number): GrantUsage {
  const { policy, version, rule, entry, pattern, maxIdleMs } = grant.ref;
  return {
    policy,
    version,
    rule,
    entry,
    pattern,
    caller: pair?.caller ?? '',
    lastUsed: pair?.lastUsed,
    since: sinceFor(grant, pair),
    maxIdleMs,
    dormant: clockStart(grant, pair) + maxIdleMs <= now,
  };
}

function byLastUse(a: GrantUsage, b: GrantUsage): number {
  if (a.lastUsed !== b.lastUsed) {
    if (a.lastUsed === undefined) return -1;
    if (b.lastUsed === undefined) return 1;
    return a.lastUsed - b.lastUsed;
  }
  return (
    a.since - b.since ||
    compare(a.policy, b.policy) ||
    compare(a.version, b.version) ||
    compare(a.rule, b.rule) ||
    a.entry - b.entry ||
    compare(a.caller, b.caller)
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
