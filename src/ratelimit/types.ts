/** A token bucket's shape, as a rule declares it. */
export interface BucketSpec {
  readonly capacity: number;
  readonly refillPerSecond: number;
}

/** What a bucket answered for one check; also the source of the ratelimit-* headers. */
export interface LimitResult {
  readonly allowed: boolean;
  /** Bucket capacity (ratelimit-limit). */
  readonly limit: number;
  /** Whole tokens left after this check (ratelimit-remaining). */
  readonly remaining: number;
  /** Whole seconds until the bucket is full again (ratelimit-reset). */
  readonly resetSeconds: number;
  /** Whole seconds until `cost` tokens are available; 0 when allowed (retry-after). */
  readonly retryAfterSeconds: number;
}

/**
 * Where bucket state lives. The in-process store answers synchronously; a network store
 * (Redis) answers with a promise. Callers must handle both without awaiting needlessly.
 */
export interface BucketStore {
  readonly kind: string;
  take(key: string, spec: BucketSpec, cost: number): LimitResult | Promise<LimitResult>;
  close(): Promise<void>;
}
