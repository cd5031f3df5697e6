import {
  countActive,
  coversRule,
  DEFAULT_MAX_TRACKED_KEYS,
  ruleProblem,
  toError,
  windowKey,
  type QuarantineCounts,
  type QuarantineEntry,
  type QuarantineEvent,
  type QuarantineRule,
  type QuarantineState,
  type QuarantineStateOptions,
} from './types';

export interface MemoryQuarantineOptions extends QuarantineStateOptions {
  /** Cap on (policy, caller) denial windows tracked at once; the least recently touched goes first. */
  readonly maxTrackedKeys?: number;
  /** How often expired entries are removed (their 'leave' event) and stale windows dropped. */
  readonly sweepMs?: number;
}

interface DenialWindow {
  readonly windowMs: number;
  /** Ascending; never longer than the rule's `denials`, since reaching it trips and clears. */
  times: number[];
}

/**
 * Quarantine state of one process: the single-replica (no Redis) deployment. Everything is
 * synchronous; the promises only match the shared interface.
 */
export class MemoryQuarantineState implements QuarantineState {
  readonly kind = 'memory' as const;
  private readonly entries = new Map<string, QuarantineEntry>();
  /** Map order is recency order: every touch re-inserts, so eviction takes the first key. */
  private readonly windows = new Map<string, DenialWindow>();
  private readonly maxTrackedKeys: number;
  private readonly onEvent: (event: QuarantineEvent) => void;
  private readonly onError: (err: Error) => void;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;

  constructor(options: MemoryQuarantineOptions) {
    this.onEvent = options.onEvent;
    this.onError = options.onError ?? (() => undefined);
    this.now = options.now ?? Date.now;
    this.maxTrackedKeys = Math.max(1, options.maxTrackedKeys ?? DEFAULT_MAX_TRACKED_KEYS);
    this.timer = setInterval(() => this.sweep(), options.sweepMs ?? 1000);
    // Quarantine bookkeeping must never be what keeps a stopping process alive.
    this.timer.unref();
  }

  /** Number of (policy, caller) denial windows held: for tests and metrics. */
  get trackedKeys(): number {
    return this.windows.size;
  }

  current(caller: string, now: number = this.now()): QuarantineEntry | undefined {
    const entry = this.entries.get(caller);
    return entry !== undefined && entry.until > now ? entry : undefined;
  }

  async recordDenial(caller: string, rule: QuarantineRule): Promise<QuarantineEntry | undefined> {
    try {
      const problem = ruleProblem(rule);
      if (problem !== undefined) throw new Error(problem);
      const now = this.now();
      this.expire(caller, now);
      const active = this.entries.get(caller);
      // Not even counted: a quarantine must not be extended by the denials it causes.
      if (active !== undefined && coversRule(active, rule.dryRun)) return undefined;

      const key = windowKey(rule.policy, caller);
      const previous = this.windows.get(key);
      this.windows.delete(key);
      const floor = now - rule.windowMs;
      const times = previous === undefined ? [] : previous.times.filter((t) => t > floor);
      times.push(now);
      if (times.length >= rule.denials) {
        const entry: QuarantineEntry = {
          caller,
          policy: rule.policy,
          since: now,
          until: now + rule.durationMs,
          denials: times.length,
          dryRun: rule.dryRun,
        };
        this.entries.set(caller, entry);
        this.emit({ type: 'enter', entry });
        return entry;
      }
      this.windows.set(key, { windowMs: rule.windowMs, times });
      while (this.windows.size > this.maxTrackedKeys) {
        const oldest = this.windows.keys().next().value as string;
        this.windows.delete(oldest);
      }
      return undefined;
    } catch (err) {
      this.onError(toError(err));
      return undefined;
    }
  }

  async list(): Promise<QuarantineEntry[]> {
    const now = this.now();
    return [...this.entries.values()].filter((e) => e.until > now);
  }

  async release(caller: string): Promise<QuarantineEntry | undefined> {
    // An entry whose time is up was never the operator's to release: it left by expiry.
    if (this.expire(caller, this.now())) return undefined;
    const entry = this.entries.get(caller);
    if (entry === undefined) return undefined;
    this.entries.delete(caller);
    this.emit({ type: 'leave', entry, cause: 'released' });
    return entry;
  }

  async ready(): Promise<void> {}

  /** Puts an entry in place without an event: policy tests start a case already quarantined. */
  seed(entry: QuarantineEntry): void {
    this.entries.set(entry.caller, entry);
  }

  activeCounts(now: number = this.now()): QuarantineCounts {
    return countActive(this.entries.values(), now);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
  }

  /** Emits 'leave' for expired entries and drops windows whose denials all fell out. Runs on a timer. */
  sweep(now: number = this.now()): void {
    for (const caller of [...this.entries.keys()]) this.expire(caller, now);
    for (const [key, w] of this.windows) {
      if (w.times.length === 0 || w.times[w.times.length - 1]! <= now - w.windowMs)
        this.windows.delete(key);
    }
  }

  /** Removes the caller's entry if its time is up; true when it did. */
  private expire(caller: string, now: number): boolean {
    const entry = this.entries.get(caller);
    if (entry === undefined || entry.until > now) return false;
    this.entries.delete(caller);
    this.emit({ type: 'leave', entry, cause: 'expired' });
    return true;
  }

  private emit(event: QuarantineEvent): void {
    try {
      this.onEvent(event);
    } catch (err) {
      this.onError(toError(err));
    }
  }
}
