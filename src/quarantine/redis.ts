import { randomBytes } from 'node:crypto';
import { withDeadline } from '../util/deadline';
import type { EventEmitter } from 'node:events';
import type { Cluster, Redis } from 'ioredis';
import {
  EXPIRE_LUA,
  quarantineKeys,
  RECORD_DENIAL_LUA,
  RELEASE_LUA,
  SNAPSHOT_LUA,
  type QuarantineKeys,
} from './scripts';
import {
  countActive,
  coversRule,
  ruleProblem,
  toError,
  type QuarantineCounts,
  type QuarantineEntry,
  type QuarantineEvent,
  type QuarantineRule,
  type QuarantineState,
  type QuarantineStateOptions,
} from './types';

export interface RedisQuarantineOptions extends QuarantineStateOptions {
  /** Runs the scripts. Owned by the caller: close() leaves it open. */
  readonly client: Redis | Cluster;
  /**
   * A separate connection for pub/sub (e.g. client.duplicate()): a subscribed connection
   * cannot run scripts. Owned by the caller too: close() only unsubscribes from the channel.
   */
  readonly subscriber: Redis | Cluster;
  /** Prefix of every key and of the channel; default 'gatehouse'. */
  readonly keyPrefix?: string;
  /** Full reload of the local mirror, covering missed messages and Redis restarts; default 5000. */
  readonly resyncMs?: number;
  /** How often entries past their time are removed (and their 'leave' emitted); default 1000. */
  readonly sweepMs?: number;
  /** Budget of one Redis call (script, subscribe); default 1000. */
  readonly timeoutMs?: number;
}

/** A published change, as the scripts encode it. */
interface QuarantineMessage {
  readonly type: 'enter' | 'leave';
  readonly cause?: 'expired' | 'released';
  readonly entry: QuarantineEntry;
  readonly seq: number;
}

/** What the mirror knows of one caller; `entry` undefined is a tombstone (left at `seq`). */
interface MirrorRecord {
  readonly entry: QuarantineEntry | undefined;
  readonly seq: number;
}

type SnapshotReply = [string, string, string[]];
interface QuarantineCommands {
  gatehouseQuarantineRecord(...args: string[]): Promise<string[]>;
  gatehouseQuarantineExpire(...args: string[]): Promise<string[]>;
  gatehouseQuarantineRelease(...args: string[]): Promise<string[]>;
  gatehouseQuarantineSnapshot(entries: string, seq: string): Promise<SnapshotReply>;
}
type Client = (Redis | Cluster) & QuarantineCommands;

/**
 * After a call's own deadline, how much longer the replica waits for the reply: a script
 * that ran in time must not be given up on while its reply travels back, or its change
 * would have no event.
 */
const REPLY_GRACE_MS = 200;

/**
 * Quarantine state shared by every replica through Redis (or a Redis Cluster).
 *
 * Writes are atomic scripts on Redis's clock; each change is published with a sequence
 * number. The hot path reads a local mirror fed by those messages, the replies of this
 * replica's own scripts, and a full snapshot every `resyncMs`. Sequence numbers make the
 * three sources commute: a change is applied only if newer than what the mirror holds for
 * that caller, so a stale snapshot or late reply never resurrects a released entry.
 *
 * Events: each transition is emitted by the one replica whose script performed it.
 *
 * Ownership: `client` and `subscriber` belong to the caller, who closes them after close().
 */
export class RedisQuarantineState implements QuarantineState {
  readonly kind = 'redis' as const;
  private readonly client: Client;
  private readonly subscriber: Redis | Cluster;
  private readonly keys: QuarantineKeys;
  private readonly onEvent: (event: QuarantineEvent) => void;
  private readonly onError: (err: Error) => void;
  private readonly onSuccess: () => void;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly mirror = new Map<string, MirrorRecord>();
  /** Redis clock minus ours, measured at each snapshot: entries carry Redis times. */
  private offsetMs = 0;
  private highestSeq = 0;
  private subscribed = false;
  private closed = false;
  private readonly memberPrefix = randomBytes(6).toString('hex');
  private memberCount = 0;
  private refreshing: Promise<void> | undefined;
  private sweeping = false;
  private readonly loaded: Promise<void>;
  private markLoaded!: () => void;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly onMessage = (channel: string, text: string): void => {
    if (channel === this.keys.channel) this.receive(text);
  };
  private readonly onSubscriberReady = (): void => {
    // ioredis emits 'ready' before it resends SUBSCRIBE, so reload a little later to cover
    // what was published while the connection was down.
    const timer = setTimeout(() => void this.refresh(), 100);
    timer.unref();
  };

  /** Quarantine entries mirrored in this process. */
  get trackedKeys(): number {
    return this.mirror.size;
  }

  constructor(options: RedisQuarantineOptions) {
    this.client = options.client as Client;
    this.subscriber = options.subscriber;
    this.keys = quarantineKeys(options.keyPrefix ?? 'gatehouse');
    this.onEvent = options.onEvent;
    this.onError = options.onError ?? (() => undefined);
    this.onSuccess = options.onSuccess ?? (() => undefined);
    this.now = options.now ?? Date.now;
    this.timeoutMs = options.timeoutMs ?? 1000;
    this.loaded = new Promise<void>((resolve) => (this.markLoaded = resolve));

    this.client.defineCommand('gatehouseQuarantineRecord', {
      numberOfKeys: 3,
      lua: RECORD_DENIAL_LUA,
    });
    this.client.defineCommand('gatehouseQuarantineExpire', { numberOfKeys: 2, lua: EXPIRE_LUA });
    this.client.defineCommand('gatehouseQuarantineRelease', { numberOfKeys: 2, lua: RELEASE_LUA });
    this.client.defineCommand('gatehouseQuarantineSnapshot', {
      numberOfKeys: 2,
      lua: SNAPSHOT_LUA,
    });

    const events = this.subscriber as EventEmitter;
    events.on('message', this.onMessage);
    events.on('ready', this.onSubscriberReady);

    // Timers are unref'd: quarantine bookkeeping must never keep a stopping process alive.
    const resync = setInterval(() => void this.refresh(), options.resyncMs ?? 5000);
    const sweep = setInterval(() => void this.sweep(), options.sweepMs ?? 1000);
    resync.unref();
    sweep.unref();
    this.timers.push(resync, sweep);
    void this.refresh();
  }

  current(caller: string, now: number = this.now()): QuarantineEntry | undefined {
    const entry = this.mirror.get(caller)?.entry;
    return entry !== undefined && entry.until > now + this.offsetMs ? entry : undefined;
  }

  async recordDenial(caller: string, rule: QuarantineRule): Promise<QuarantineEntry | undefined> {
    if (this.closed) return undefined;
    try {
      const problem = ruleProblem(rule);
      if (problem !== undefined) throw new Error(problem);
      // The script decides, but a caller already in quarantine keeps being denied: without
      // this, every one of those denials would cost a round trip to one hot slot.
      const active = this.current(caller);
      if (active !== undefined && coversRule(active, rule.dryRun)) return undefined;
      const member = `${this.memberPrefix}:${(this.memberCount = (this.memberCount + 1) % Number.MAX_SAFE_INTEGER)}`;
      const messages = await this.call((deadline) =>
        this.client.gatehouseQuarantineRecord(
          this.keys.entries,
          this.keys.seq,
          this.keys.denials(rule.policy, caller),
          this.keys.channel,
          deadline,
          caller,
          rule.policy,
          String(rule.denials),
          String(rule.windowMs),
          String(rule.durationMs),
          rule.dryRun ? '1' : '0',
          member,
        ),
      );
      this.onSuccess();
      return this.handle(messages).find((m) => m.type === 'enter')?.entry;
    } catch (err) {
      this.onError(toError(err));
      return undefined;
    }
  }

  activeCounts(now: number = this.now()): QuarantineCounts {
    return countActive(
      [...this.mirror.values()].map((r) => r.entry),
      now + this.offsetMs,
    );
  }

  /** Active entries as Redis has them now (not the mirror). Rejects on backend error. */
  async list(): Promise<QuarantineEntry[]> {
    const { now, entries } = await this.loadSnapshot();
    return entries.filter((e) => e.until > now);
  }

  async release(caller: string): Promise<QuarantineEntry | undefined> {
    if (this.closed) throw new Error('quarantine state is closed');
    const messages = await this.call((deadline) =>
      this.client.gatehouseQuarantineRelease(
        this.keys.entries,
        this.keys.seq,
        this.keys.channel,
        deadline,
        caller,
      ),
    );
    return this.handle(messages).find((m) => m.type === 'leave' && m.cause === 'released')?.entry;
  }

  /**
   * Resolves once subscribed and the first snapshot is loaded. Never rejects: while Redis is
   * unreachable it keeps retrying (every resyncMs), so bound the wait at startup.
   */
  ready(): Promise<void> {
    return this.loaded;
  }

  /** Stops the timers and unsubscribes; the connections stay open for their owner to close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    const events = this.subscriber as EventEmitter;
    events.off('message', this.onMessage);
    events.off('ready', this.onSubscriberReady);
    if (this.subscribed) {
      this.subscribed = false;
      try {
        await withDeadline(this.subscriber.unsubscribe(this.keys.channel), this.timeoutMs);
      } catch (err) {
        this.onError(toError(err));
      }
    }
  }

  /**
   * Subscribes if needed, then reloads the mirror from a snapshot. Runs on a timer; errors
   * go to onError. Subscribing first means no change can fall between snapshot and stream.
   */
  async refresh(): Promise<void> {
    if (this.closed) return;
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      try {
        if (!this.subscribed) {
          await withDeadline(this.subscriber.subscribe(this.keys.channel), this.timeoutMs);
          this.subscribed = true;
          // close() ran while SUBSCRIBE was in flight and had nothing to unsubscribe yet.
          if (this.closed) {
            this.subscribed = false;
            await withDeadline(this.subscriber.unsubscribe(this.keys.channel), this.timeoutMs);
            return;
          }
        }
        await this.loadSnapshot();
        this.markLoaded();
        this.onSuccess();
      } catch (err) {
        this.onError(toError(err));
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Removes entries whose time is up; the replica whose script removes one emits its 'leave'. Runs on a timer. */
  async sweep(): Promise<void> {
    if (this.closed || this.sweeping) return;
    this.sweeping = true;
    try {
      const now = this.now() + this.offsetMs;
      const due = [...this.mirror.values()]
        .filter((r) => r.entry !== undefined && r.entry.until <= now)
        .map((r) => r.entry!.caller);
      const results = await Promise.allSettled(
        due.map((caller) =>
          this.call((deadline) =>
            this.client.gatehouseQuarantineExpire(
              this.keys.entries,
              this.keys.seq,
              this.keys.channel,
              deadline,
              caller,
            ),
          ),
        ),
      );
      for (const r of results) {
        if (r.status === 'fulfilled') this.handle(r.value);
        else this.onError(toError(r.reason));
      }
    } finally {
      this.sweeping = false;
    }
  }

  /** Runs one script with a deadline it enforces itself (in Redis time) and a slightly longer local one. */
  private call<T>(run: (deadline: string) => Promise<T>): Promise<T> {
    const deadline = Math.ceil(this.now() + this.offsetMs + this.timeoutMs);
    return withDeadline(run(String(deadline)), this.timeoutMs + REPLY_GRACE_MS);
  }

  private async loadSnapshot(): Promise<{ now: number; entries: QuarantineEntry[] }> {
    const before = this.now();
    const [nowText, seqText, flat] = await withDeadline(
      this.client.gatehouseQuarantineSnapshot(this.keys.entries, this.keys.seq),
      this.timeoutMs,
    );
    const after = this.now();
    const redisNow = Number(nowText);
    const seq = Number(seqText);
    const entries: QuarantineEntry[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const entry = parseEntry(safeJson(flat[i + 1]!));
      if (entry === undefined)
        this.onError(new Error(`quarantine: unreadable entry for ${flat[i]} in Redis`));
      else entries.push(entry);
    }
    this.offsetMs = redisNow - (before + after) / 2;
    this.applySnapshot(seq, entries);
    return { now: redisNow, entries };
  }

  /**
   * Replaces the mirror with the snapshot, except callers whose last known change is newer
   * than it (a message or reply that crossed the snapshot in flight).
   */
  private applySnapshot(seq: number, entries: readonly QuarantineEntry[]): void {
    // A counter behind what we have seen means Redis lost its data (restart without
    // persistence, failover): the snapshot is the only truth left.
    const reset = seq < this.highestSeq;
    const newer = reset ? [] : [...this.mirror].filter(([, r]) => r.seq > seq);
    this.mirror.clear();
    for (const entry of entries) this.mirror.set(entry.caller, { entry, seq });
    for (const [caller, record] of newer) this.mirror.set(caller, record);
    if (reset || seq > this.highestSeq) this.highestSeq = seq;
  }

  private receive(text: string): void {
    const message = parseMessage(text);
    if (message === undefined) {
      this.onError(new Error('quarantine: unreadable change message on the channel'));
      return;
    }
    this.apply(message);
  }

  private apply(message: QuarantineMessage): void {
    const caller = message.entry.caller;
    const known = this.mirror.get(caller);
    if (known !== undefined && known.seq >= message.seq) return;
    this.mirror.set(caller, {
      entry: message.type === 'enter' ? message.entry : undefined,
      seq: message.seq,
    });
    if (message.seq > this.highestSeq) this.highestSeq = message.seq;
  }

  /** Applies this replica's own script results and emits their events: it performed them. */
  private handle(texts: readonly string[]): QuarantineMessage[] {
    const messages: QuarantineMessage[] = [];
    for (const text of texts) {
      const message = parseMessage(text);
      if (message === undefined) {
        this.onError(new Error('quarantine: unreadable script reply'));
        continue;
      }
      messages.push(message);
      this.apply(message);
      const event: QuarantineEvent =
        message.type === 'enter'
          ? { type: 'enter', entry: message.entry }
          : { type: 'leave', entry: message.entry, cause: message.cause ?? 'expired' };
      try {
        this.onEvent(event);
      } catch (err) {
        this.onError(toError(err));
      }
    }
    return messages;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseEntry(value: unknown): QuarantineEntry | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.caller !== 'string' || typeof v.policy !== 'string') return undefined;
  if (
    typeof v.since !== 'number' ||
    typeof v.until !== 'number' ||
    typeof v.denials !== 'number' ||
    typeof v.dryRun !== 'boolean'
  )
    return undefined;
  return {
    caller: v.caller,
    policy: v.policy,
    since: v.since,
    until: v.until,
    denials: v.denials,
    dryRun: v.dryRun,
  };
}

function parseMessage(text: string): QuarantineMessage | undefined {
  const value = safeJson(text);
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const entry = parseEntry(v.entry);
  if (entry === undefined || typeof v.seq !== 'number') return undefined;
  if (v.type === 'enter') return { type: 'enter', entry, seq: v.seq };
  if (v.type === 'leave' && (v.cause === 'expired' || v.cause === 'released'))
    return { type: 'leave', cause: v.cause, entry, seq: v.seq };
  return undefined;
}
