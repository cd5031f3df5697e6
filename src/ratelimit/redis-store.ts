import type Redis from 'ioredis';
import type { Cluster } from 'ioredis';
import type { RedisConnections } from '../redis/connections';
import { EpisodeLog, describeBackendError } from '../util/episode-log';
import { withDeadline } from '../util/deadline';
import type { Logger } from 'pino';
import { CircuitBreaker, type BreakerState } from './breaker';
import { redisBucketKey, TOKEN_BUCKET_LUA } from './bucket-script';
import { limitResult } from './token-bucket';
import type { BucketSpec, BucketStore, LimitResult } from './types';

export interface RedisStoreOptions {
  /** Takes use its `buckets` connection, bounded by its `timeoutMs`; the owner closes it. */
  readonly connections: RedisConnections;
  readonly log: Logger;
  readonly breaker?: { failureThreshold?: number; cooldownMs?: number; maxCooldownMs?: number };
  /** Told of every breaker state change (metrics). */
  readonly onBreakerChange?: (state: BreakerState) => void;
}

/** Raised instead of waiting when the backend is known to be failing. */
export class BackendUnavailableError extends Error {}

type TakeReply = [number, string];
interface BucketCommands {
  gatehouseTake(key: string, capacity: number, rate: number, cost: number): Promise<TakeReply>;
}
type Client = (Redis | Cluster) & BucketCommands;

/**
 * Token buckets shared by every replica through Redis or Redis Cluster: one script call
 * (one round trip) per limited check. Never waits longer than `timeoutMs`; a backend that
 * keeps failing trips a breaker so checks stop paying the timeout, and ioredis reconnects
 * on its own. A failing episode is logged once, when the breaker opens and when it closes.
 */
export class RedisBucketStore implements BucketStore {
  readonly kind: 'redis' | 'redis-cluster';
  readonly breaker: CircuitBreaker;
  private readonly client: Client;
  private readonly connections: RedisConnections;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  /** Failed takes since the last success: the ones before the breaker opened belong to its episode too. */
  private failuresSinceSuccess = 0;
  private readonly episode: EpisodeLog;

  constructor(options: RedisStoreOptions) {
    this.log = options.log.child({ component: 'redis' });
    this.episode = new EpisodeLog(this.log, {
      failing: 'rate-limit backend failing: breaker open, limits follow onBackendError',
      recovered: 'rate-limit backend recovered: breaker closed',
      unit: 'checksAffected',
    });
    this.timeoutMs = options.connections.timeoutMs;
    this.breaker = new CircuitBreaker({
      failureThreshold: options.breaker?.failureThreshold ?? 3,
      cooldownMs: options.breaker?.cooldownMs ?? 500,
      maxCooldownMs: options.breaker?.maxCooldownMs ?? 5000,
      onChange: (from, to, error) => {
        this.onBreakerChange(from, to, error);
        options.onBreakerChange?.(to);
      },
    });
    this.connections = options.connections;
    this.kind = options.connections.kind;
    this.client = options.connections.buckets as Client;
    this.client.defineCommand('gatehouseTake', { numberOfKeys: 1, lua: TOKEN_BUCKET_LUA });
  }

  /** Connected and the breaker is not open: for readiness probes. */
  get healthy(): boolean {
    return this.connections.connected && this.breaker.state !== 'open';
  }

  async take(key: string, spec: BucketSpec, cost: number): Promise<LimitResult> {
    if (!this.breaker.tryAcquire()) {
      this.episode.failed('not connected');
      throw new BackendUnavailableError('rate-limit backend unavailable (breaker open)');
    }
    try {
      const [allowed, tokens] = await withDeadline(
        this.client.gatehouseTake(redisBucketKey(key), spec.capacity, spec.refillPerSecond, cost),
        this.timeoutMs,
      );
      this.failuresSinceSuccess = 0;
      this.breaker.success();
      return limitResult(spec, cost, allowed === 1, Number(tokens));
    } catch (err) {
      this.failuresSinceSuccess++;
      if (this.episode.open) this.episode.failed(describeBackendError(err));
      this.breaker.failure(describeBackendError(err));
      throw err;
    }
  }

  /** The connection belongs to RedisConnections, which closes it after every store. */
  async close(): Promise<void> {}

  private onBreakerChange(from: BreakerState, to: BreakerState, error: string | undefined): void {
    if (to === 'open' && from === 'closed') {
      this.episode.failed(error ?? 'unexpected error', this.failuresSinceSuccess);
    } else if (to === 'closed') {
      this.episode.recovered({ backend: this.kind });
    }
  }
}
