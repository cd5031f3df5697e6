import type { BucketSpec, BucketStore, LimitResult } from './types';
import { msUntilFull, takeTokens, type BucketState } from './token-bucket';

interface Entry extends BucketState {
  /** Monotonic ms at which this bucket is full again; a full bucket equals no bucket. */
  fullAtMs: number;
}

export interface MemoryStoreOptions {
  /** Hard bound on live buckets; past it the least recently created are dropped. */
  maxBuckets?: number;
  /** How often buckets that have refilled completely are dropped. */
  sweepIntervalMs?: number;
  /** Monotonic clock in ms (tests inject one). */
  now?: () => number;
}

const DEFAULT_MAX_BUCKETS = 1_000_000;
const DEFAULT_SWEEP_MS = 10_000;

/**
 * The embedded, single-process bucket store. Memory stays bounded two ways: a bucket
 * that has refilled to capacity is indistinguishable from a fresh one, so sweeping it is
 * lossless; and a hard cap drops the oldest buckets if a flood of distinct keys outruns
 * the sweep (this can only ever admit more, never deny wrongly).
 */
export class MemoryBucketStore implements BucketStore {
  readonly kind = 'memory';
  private readonly buckets = new Map<string, Entry>();
  private readonly maxBuckets: number;
  private readonly now: () => number;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.maxBuckets = options.maxBuckets ?? DEFAULT_MAX_BUCKETS;
    this.now = options.now ?? (() => performance.now());
    this.sweepTimer = setInterval(() => this.sweep(), options.sweepIntervalMs ?? DEFAULT_SWEEP_MS);
    this.sweepTimer.unref();
  }

  get size(): number {
    return this.buckets.size;
  }

  take(key: string, spec: BucketSpec, cost: number): LimitResult {
    const nowMs = this.now();
    let entry = this.buckets.get(key);
    if (entry === undefined) {
      entry = { tokens: spec.capacity, updatedAtMs: nowMs, fullAtMs: nowMs };
      if (this.buckets.size >= this.maxBuckets) this.dropOldest();
      this.buckets.set(key, entry);
    }
    const result = takeTokens(entry, spec, cost, nowMs);
    entry.fullAtMs = nowMs + msUntilFull(entry, spec);
    return result;
  }

  /** Drops every bucket that has refilled completely. */
  sweep(): number {
    const nowMs = this.now();
    let dropped = 0;
    for (const [key, entry] of this.buckets) {
      if (entry.fullAtMs <= nowMs) {
        this.buckets.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.buckets.clear();
  }

  private dropOldest(): void {
    // Map iterates in insertion order, so the first key is the oldest bucket.
    const oldest = this.buckets.keys().next();
    if (!oldest.done) this.buckets.delete(oldest.value);
  }
}
