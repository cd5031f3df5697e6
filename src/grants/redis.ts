import type { Cluster, Redis } from 'ioredis';
import { withDeadline } from '../util/deadline';
import { GRANT_SYNC_LUA, grantVersionKey } from './sync-script';
import { GrantTable, type GrantState, type VersionState } from './table';
import type { GrantRef, GrantRenewFilter, GrantTracker, GrantUsage } from './types';

export interface RedisGrantTrackerOptions {
  /** Owned by the caller, who closes it; the tracker only defines its script on it. */
  readonly client: Redis | Cluster;
  readonly keyPrefix?: string;
  /** How often buffered uses are pushed and others' pulled; default 5000 ms. */
  readonly flushMs?: number;
  /** The budget of one sync's Redis calls; default 2000 ms. */
  readonly timeoutMs?: number;
  /** Bound on buffered uses awaiting a flush; default 100,000. */
  readonly maxPending?: number;
  /** Every backend failure (also those whose call rejects), for logs and metrics. */
  readonly onError?: (error: Error) => void;
  /** Called after a sync succeeds, so an episode of errors can be closed. */
  readonly onSuccess?: () => void;
}

type SyncReply = string[] | number;
interface GrantCommands {
  gatehouseGrantSync(key: string, ...args: (string | number)[]): Promise<SyncReply>;
}
type Client = (Redis | Cluster) & GrantCommands;

interface PendingUse {
  readonly grant: GrantState;
  readonly caller: string;
  lastUsed: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Grant usage shared by every replica through Redis, so all replicas agree on who is dormant
 * and a restart keeps the clocks. Requests never wait on Redis: isDormant and used work on a
 * local mirror, uses are buffered and pushed (with a pull of everyone else's) every flushMs.
 * Dormancy is a matter of days, so a mirror a few seconds stale changes nothing.
 *
 * Times are the `now` the callers pass (their Date.now()), not Redis TIME: with thresholds of
 * days, replica clock skew of seconds is irrelevant, and the hot path stays free of I/O.
 */
export class RedisGrantTracker implements GrantTracker {
  readonly kind = 'redis' as const;
  private readonly client: Client;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  private readonly onError: (error: Error) => void;
  private readonly onSuccess: () => void;
  private readonly table = new GrantTable({ loadedOnSight: false });
  private pending = new Map<VersionState, Map<string, PendingUse>>();
  private pendingCount = 0;
  private overflowReported = false;
  // Redis work runs one piece at a time: a renewal must see the state a flush just pulled, and
  // two flushes must not interleave their snapshots of the pending uses.
  private queue: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;

  /** (grant, caller) pairs known to this process. */
  get pairs(): number {
    return this.table.pairCount;
  }

  constructor(options: RedisGrantTrackerOptions) {
    this.client = options.client as Client;
    this.prefix = options.keyPrefix ?? 'gatehouse';
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.maxPending = options.maxPending ?? 100_000;
    this.onError = options.onError ?? (() => undefined);
    this.onSuccess = options.onSuccess ?? (() => undefined);
    this.readyPromise = new Promise((resolve) => (this.resolveReady = resolve));
    this.client.defineCommand('gatehouseGrantSync', { numberOfKeys: 1, lua: GRANT_SYNC_LUA });
    this.timer = setInterval(() => {
      if (this.queued === 0) this.sync().catch(() => undefined);
    }, options.flushMs ?? 5000);
    this.timer.unref();
  }

  /**
   * Until a version's state has been pulled, its grants are never dormant. The grant is valid
   * per policy either way; dormancy only narrows it. Failing closed would turn a Redis outage
   * at startup into a denial of every allow-listed caller of every expiring grant, while
   * failing open only lets a dormant caller through until the first pull succeeds.
   */
  isDormant(grant: GrantRef, caller: string, now: number): boolean {
    return this.table.isDormant(grant, caller, now);
  }

  used(grant: GrantRef, caller: string, now: number): void {
    // A grant setGrants does not know is one a reload just removed: recording it would bring
    // the old version back.
    const state = this.table.lookup(grant);
    if (state === undefined) return;
    this.table.touch(state, caller, now);
    this.addPending(state, caller, now);
  }

  setGrants(grants: readonly GrantRef[], now: number): void {
    const { added } = this.table.setGrants(grants, now);
    // Pull new versions now rather than a flush interval later; until then they are unloaded.
    if (added.length > 0 && !this.closed) this.sync().catch(() => undefined);
  }

  async renew(filter: GrantRenewFilter, now: number): Promise<number> {
    return this.enqueue(async () => {
      // Pull first: a grant-wide renewal counts every replica's callers, and the pattern check
      // needs the current pairs.
      await this.flush();
      const { targets, count } = this.table.planRenewal(filter);
      const byVersion = new Map<VersionState, [string, number][]>();
      for (const { grant, caller } of targets) {
        const field = caller === undefined ? `g:${grant.id}` : `r:${grant.id}|${caller}`;
        const fields = byVersion.get(grant.version) ?? [];
        fields.push([field, now]);
        byVersion.set(grant.version, fields);
      }
      // Each call's reply is the hash with the renewal in it, so the mirror follows.
      const results = await Promise.allSettled(
        [...byVersion].map(([version, fields]) => this.syncVersion(version, fields)),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) throw this.fail(failed.reason);
      return count;
    });
  }

  dormantCount(now: number): number {
    return this.table.dormantCount(now);
  }

  async report(now: number): Promise<GrantUsage[]> {
    // A report from a stale mirror would list stale access as unused: fail instead.
    await this.sync();
    return this.table.rows(now);
  }

  /** Pushes buffered uses and pulls every current version; rejects (and tells onError) on failure. */
  sync(): Promise<void> {
    return this.enqueue(() => this.flush());
  }

  /** Resolves once every version known at that time has been pulled successfully. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** Stops the timer and makes a last bounded attempt to push buffered uses. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.sync().catch(() => undefined);
  }

  private addPending(grant: GrantState, caller: string, now: number): void {
    const field = `u:${grant.id}|${caller}`;
    let fields = this.pending.get(grant.version);
    const existing = fields?.get(field);
    if (existing !== undefined) {
      if (now > existing.lastUsed) existing.lastUsed = now;
      return;
    }
    if (this.pendingCount >= this.maxPending) {
      // The mirror holds the use until the next pull replaces it; other replicas learn of it
      // only if it recurs once the buffer drains. Losing a use can only make dormancy earlier,
      // and only after an outage long enough to fill the buffer.
      if (!this.overflowReported) {
        this.overflowReported = true;
        this.onError(
          new Error(
            `grant usage buffer full (${this.maxPending} uses awaiting Redis): new uses are not shared until a flush succeeds`,
          ),
        );
      }
      return;
    }
    if (fields === undefined) {
      fields = new Map();
      this.pending.set(grant.version, fields);
    }
    fields.set(field, { grant, caller, lastUsed: now });
    this.pendingCount++;
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    this.queued++;
    const run = this.queue.then(work, work).finally(() => this.queued--);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** One push-and-pull of every current version plus versions that only have buffered uses left. */
  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = new Map();
    this.pendingCount = 0;
    const work = new Map<VersionState, Map<string, PendingUse> | undefined>();
    for (const version of this.table.versions()) work.set(version, undefined);
    // Uses of a version a reload removed before the flush are still pushed: they happened.
    for (const [version, uses] of batch) work.set(version, uses);

    const entries = [...work];
    const results = await Promise.allSettled(
      entries.map(([version, uses]) =>
        this.syncVersion(
          version,
          uses === undefined
            ? []
            : [...uses].map(([field, use]) => [field, use.lastUsed] as [string, number]),
        ),
      ),
    );
    let failure: unknown;
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') return;
      failure ??= result.reason;
      const uses = entries[i]![1];
      if (uses !== undefined)
        for (const use of uses.values()) this.addPending(use.grant, use.caller, use.lastUsed);
    });
    if (failure !== undefined) throw this.fail(failure);
    this.overflowReported = false;
    this.onSuccess();
    if ([...this.table.versions()].every((v) => v.loaded)) this.resolveReady();
  }

  /**
   * A call that missed its deadline is dropped here even if Redis runs it later; that late run
   * only raises maxima and TTLs, which the next sync would have done anyway.
   */
  private async syncVersion(
    version: VersionState,
    fields: readonly [string, number][],
  ): Promise<void> {
    const key = grantVersionKey(this.prefix, version.policy, version.version);
    const ttlMs = version.maxIdleMs * 2 + DAY_MS;
    const expectExisting = version.loaded && !version.removed;
    let reply = await this.call(key, ttlMs, version.since, expectExisting, fields);
    if (reply === -1)
      reply = await this.call(key, ttlMs, version.since, false, [
        ...mirrorFields(version),
        ...fields,
      ]);
    if (!Array.isArray(reply))
      throw new Error(`unexpected reply from the grant sync script for ${key}: ${String(reply)}`);
    if (!version.removed) this.applyPulled(version, reply);
  }

  private call(
    key: string,
    ttlMs: number,
    since: number,
    expectExisting: boolean,
    fields: readonly [string, number][],
  ): Promise<SyncReply> {
    const args: (string | number)[] = [ttlMs, since, expectExisting ? 1 : 0];
    for (const [field, value] of fields) args.push(field, value);
    return withDeadline(this.client.gatehouseGrantSync(key, ...args), this.timeoutMs);
  }

  /**
   * Replaces the version's mirror with the hash, then re-applies uses buffered meanwhile (the
   * hash cannot hold them yet, and this replica must keep seeing its own uses).
   */
  private applyPulled(version: VersionState, flat: string[]): void {
    const renewed = new Map<GrantState, number>();
    const callers = new Map<GrantState, Map<string, { lastUsed?: number; renewed?: number }>>();
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const field = flat[i]!;
      const value = Number(flat[i + 1]);
      if (!Number.isFinite(value)) continue;
      if (field === 'since') {
        version.since = value;
        continue;
      }
      const kind = field.slice(0, 2);
      if (kind === 'g:') {
        const grant = version.grants.get(field.slice(2));
        if (grant !== undefined) renewed.set(grant, value);
      } else if (kind === 'u:' || kind === 'r:') {
        // <rule>|<entry>|<caller>: rules have no '|', entries are numbers, the caller is the rest.
        const rest = field.slice(2);
        const cut = rest.indexOf('|', rest.indexOf('|') + 1);
        if (cut < 0) continue;
        const grant = version.grants.get(rest.slice(0, cut));
        if (grant === undefined) continue;
        const caller = rest.slice(cut + 1);
        let byCaller = callers.get(grant);
        if (byCaller === undefined) callers.set(grant, (byCaller = new Map()));
        const entry = byCaller.get(caller) ?? {};
        if (kind === 'u:') entry.lastUsed = value;
        else entry.renewed = value;
        byCaller.set(caller, entry);
      }
    }
    for (const grant of version.grants.values()) {
      grant.renewed = renewed.get(grant);
      grant.callers = new Map();
      for (const [caller, { lastUsed, renewed: callerRenewed }] of callers.get(grant) ?? []) {
        grant.callers.set(caller, { grant, caller, lastUsed, renewed: callerRenewed });
      }
    }
    for (const use of this.pending.get(version)?.values() ?? [])
      this.table.touch(use.grant, use.caller, use.lastUsed);
    version.loaded = true;
  }

  private fail(reason: unknown): Error {
    const error = reason instanceof Error ? reason : new Error(String(reason));
    this.onError(error);
    return error;
  }
}

/** Everything the mirror knows of a version, to re-seed a key Redis lost. */
function mirrorFields(version: VersionState): [string, number][] {
  const fields: [string, number][] = [];
  for (const grant of version.grants.values()) {
    if (grant.renewed !== undefined) fields.push([`g:${grant.id}`, grant.renewed]);
    for (const pair of grant.callers.values()) {
      if (pair.lastUsed !== undefined) fields.push([`u:${grant.id}|${pair.caller}`, pair.lastUsed]);
      if (pair.renewed !== undefined) fields.push([`r:${grant.id}|${pair.caller}`, pair.renewed]);
    }
  }
  return fields;
}
