import { hash } from 'node:crypto';
import type { BucketSpec, BucketStore, LimitResult } from './types';
import { msUntilFull, takeTokens, type BucketState } from './token-bucket';

interface Entry extends BucketState {
  /** Monotonic ms at which this bucket is full again; a full bucket equals no bucket. */
  fullAtMs: number;
}

export interface MemoryStoreOptions {
  /** Hard bound on live buckets; past it the least recently used are dropped. */
  maxBuckets?: number;
  /** A bucket untouched this long is dropped even if it has not refilled (slow-refill limits). */
  maxIdleMs?: number;
  /** How often full and idle buckets are dropped. */
  sweepIntervalMs?: number;
  /** Monotonic clock in ms (tests inject one). */
  now?: () => number;
}

/**
 * Measured with bench/bucket-memory.js (Node 24): about 165 bytes of live heap per bucket
 * whatever the key length (32-byte digest string, entry object, Map slot), about 380 bytes
 * of RSS once the collector's slack is counted. 200,000 buckets are therefore about 73 MiB,
 * which leaves a 256 Mi pod room for its ~100 MiB baseline and transport buffers; docs/operations.md
 * "Memory and connection budget" has the arithmetic.
 */
export const DEFAULT_MAX_BUCKETS = 200_000;
export const DEFAULT_BUCKET_MAX_IDLE_MS = 60 * 60 * 1000;
const DEFAULT_SWEEP_MS = 10_000;

/**
 * The embedded, single-process bucket store. Keys are caller-controlled (`per: header:`), so
 * each is stored as its SHA-256 digest: 32 bytes whatever the key's length. Memory stays
 * bounded three ways:
 *  - a bucket that has refilled to capacity is indistinguishable from a fresh one, so
 *    dropping it is exact;
 *  - a bucket idle for `maxIdleMs` is dropped even if not yet full;
 *  - past `maxBuckets`, the least recently used bucket is dropped.
 * The last two err towards admitting: a dropped bucket comes back full, so its caller may
 * spend up to one `capacity` sooner than the refill rate allows, never more than a caller
 * arriving fresh. Erring the other way would let a flood of new keys deny established ones.
 */
export class MemoryBucketStore implements BucketStore {
  readonly kind = 'memory';
  private readonly buckets = new Map<string, Entry>();
  private readonly maxBuckets: number;
  private readonly maxIdleMs: number;
  private readonly now: () => number;
  private readonly sweepTimer: NodeJS.Timeout;
  private evictedBeforeFull = 0;

  constructor(options: MemoryStoreOptions = {}) {
    this.maxBuckets = options.maxBuckets ?? DEFAULT_MAX_BUCKETS;
    this.maxIdleMs = options.maxIdleMs ?? DEFAULT_BUCKET_MAX_IDLE_MS;
    if (!Number.isSafeInteger(this.maxBuckets) || this.maxBuckets < 1)
      throw new RangeError(`maxBuckets must be a positive integer, not ${options.maxBuckets}`);
    if (!(this.maxIdleMs > 0))
      throw new RangeError(`maxIdleMs must be positive, not ${options.maxIdleMs}`);
    this.now = options.now ?? (() => performance.now());
    this.sweepTimer = setInterval(() => this.sweep(), options.sweepIntervalMs ?? DEFAULT_SWEEP_MS);
    this.sweepTimer.unref();
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Buckets dropped before they had refilled (idle age or the count bound): each may have admitted early. */
  get evictedEarly(): number {
    return this.evictedBeforeFull;
  }

  take(key: string, spec: BucketSpec, cost: number): LimitResult {
    const nowMs = this.now();
    const digest = hash('sha256', key, 'binary');
    let entry = this.buckets.get(digest);
    if (entry === undefined) {
      entry = { tokens: spec.capacity, updatedAtMs: nowMs, fullAtMs: nowMs };
      if (this.buckets.size >= this.maxBuckets) this.dropLeastRecentlyUsed(nowMs);
    } else {
      // Re-inserting keeps Map order = recency order, so the bound drops the coldest bucket.
      this.buckets.delete(digest);
    }
    this.buckets.set(digest, entry);
    const result = takeTokens(entry, spec, cost, nowMs);
    entry.fullAtMs = nowMs + msUntilFull(entry, spec);
    return result;
  }

  /** Drops every bucket that has refilled completely or sat idle past maxIdleMs. */
  sweep(): number {
    const nowMs = this.now();
    const idleBefore = nowMs - this.maxIdleMs;
    let dropped = 0;
    for (const [key, entry] of this.buckets) {
      if (entry.fullAtMs <= nowMs) {
        this.buckets.delete(key);
        dropped++;
      } else if (entry.updatedAtMs <= idleBefore) {
        this.buckets.delete(key);
        this.evictedBeforeFull++;
        dropped++;
      }
    }
    return dropped;
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.buckets.clear();
  }

  private dropLeastRecentlyUsed(nowMs: number): void {
    const oldest = this.buckets.entries().next();
    if (oldest.done) return;
    this.buckets.delete(oldest.value[0]);
    if (oldest.value[1].fullAtMs > nowMs) this.evictedBeforeFull++;
  }
}
