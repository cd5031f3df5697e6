import Redis, { Cluster, type RedisOptions } from 'ioredis';
import { EpisodeLog, describeBackendError } from '../util/episode-log';
import { withDeadline } from '../util/deadline';
import type { Logger } from 'pino';
import { CircuitBreaker, type BreakerState } from './breaker';
import { redisBucketKey, TOKEN_BUCKET_LUA } from './bucket-script';
import { limitResult } from './token-bucket';
import type { BucketSpec, BucketStore, LimitResult } from './types';

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// for TLS. */
  readonly url?: string;
  /** Seed nodes of a Redis Cluster, same URL form. */
  readonly clusterUrls?: readonly string[];
  /** The whole budget of one limited check's Redis work, in ms. */
  readonly timeoutMs: number;
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
 * on its own. Connection trouble is logged once per state change.
 */
export class RedisBucketStore implements BucketStore {
  readonly kind: 'redis' | 'redis-cluster';
  readonly breaker: CircuitBreaker;
  private readonly client: Client;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private connectionUp = false;
  private connectionErrorLogged = false;
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
    this.timeoutMs = options.timeoutMs;
    this.breaker = new CircuitBreaker({
      failureThreshold: options.breaker?.failureThreshold ?? 3,
      cooldownMs: options.breaker?.cooldownMs ?? 500,
      maxCooldownMs: options.breaker?.maxCooldownMs ?? 5000,
      onChange: (from, to, error) => {
        this.onBreakerChange(from, to, error);
        options.onBreakerChange?.(to);
      },
    });
    const common: RedisOptions = {
      commandTimeout: options.timeoutMs,
      // Never queue a check behind a reconnect: fail at once and let onBackendError decide.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    };
    if (options.clusterUrls && options.clusterUrls.length > 0) {
      this.kind = 'redis-cluster';
      const seeds = options.clusterUrls.map(parseRedisUrl);
      this.client = new Cluster(
        seeds.map((s) => s.node),
        {
          enableOfflineQueue: false,
          redisOptions: { ...common, ...seeds[0]!.auth },
          clusterRetryStrategy: (times) => Math.min(100 * times, 2000),
          slotsRefreshTimeout: 2000,
          retryDelayOnFailover: 20,
          retryDelayOnClusterDown: 20,
          retryDelayOnTryAgain: 20,
        },
      ) as Client;
    } else if (options.url) {
      this.kind = 'redis';
      this.client = new Redis(options.url, common) as Client;
    } else {
      throw new Error('RedisBucketStore needs url or clusterUrls');
    }
    this.client.defineCommand('gatehouseTake', { numberOfKeys: 1, lua: TOKEN_BUCKET_LUA });
    this.client.on('ready', () => {
      if (!this.connectionUp)
        this.log.info({ backend: this.kind, target: describeTargets(options) }, 'redis connected');
      this.connectionUp = true;
      this.connectionErrorLogged = false;
    });
    // Without an 'error' listener ioredis errors would crash the process.
    this.client.on('error', (err: Error) => {
      if (this.connectionErrorLogged) return;
      this.connectionErrorLogged = true;
      this.log.warn(
        { backend: this.kind, target: describeTargets(options), cause: describeBackendError(err) },
        'redis connection error; reconnecting',
      );
    });
    this.client.on('close', () => {
      if (this.connectionUp)
        this.log.warn({ backend: this.kind }, 'redis connection lost; reconnecting');
      this.connectionUp = false;
    });
  }

  /**
   * Another connection to the same Redis for background state (quarantine, grant use): it
   * queues while reconnecting and allows a longer command time than a check's budget, since
   * nothing waits on it; pub/sub needs a connection of its own.
   */
  duplicateClient(): Redis | Cluster {
    const overrides = { enableOfflineQueue: true, commandTimeout: 2000, maxRetriesPerRequest: 2 };
    const client =
      this.client instanceof Cluster
        ? this.client.duplicate(undefined, {
            enableOfflineQueue: true,
            redisOptions: { ...this.client.options.redisOptions, ...overrides },
          })
        : this.client.duplicate(overrides);
    // Errors reach the owners through their commands; without a listener ioredis would crash the process.
    client.on('error', () => undefined);
    return client;
  }

  /**
   * Waits up to `ms` for the first connection. Startup uses this so the first checks do not
   * all fall back to onBackendError; it never fails: an unreachable Redis is a state, not a crash.
   */
  async waitUntilConnected(ms: number): Promise<boolean> {
    if (this.connectionUp) return true;
    return new Promise<boolean>((resolve) => {
      const onReady = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.client.off('ready', onReady);
        resolve(false);
      }, ms);
      this.client.once('ready', onReady);
    });
  }

  /** Connected and the breaker is not open: for readiness probes. */
  get healthy(): boolean {
    return this.connectionUp && this.breaker.state !== 'open';
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

  async close(): Promise<void> {
    try {
      await withDeadline(this.client.quit(), 1000);
    } catch {
      this.client.disconnect();
    }
  }

  private onBreakerChange(from: BreakerState, to: BreakerState, error: string | undefined): void {
    if (to === 'open' && from === 'closed') {
      this.episode.failed(error ?? 'unexpected error', this.failuresSinceSuccess);
    } else if (to === 'closed') {
      this.episode.recovered({ backend: this.kind });
    }
  }
}

interface ParsedRedisUrl {
  node: { host: string; port: number };
  auth: Pick<RedisOptions, 'username' | 'password' | 'tls'>;
}

export function parseRedisUrl(text: string): ParsedRedisUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`not a Redis URL: expected redis://host:port`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw new Error(`not a Redis URL (${url.protocol}): expected redis://host:port`);
  const auth: ParsedRedisUrl['auth'] = {};
  if (url.username) auth.username = decodeURIComponent(url.username);
  if (url.password) auth.password = decodeURIComponent(url.password);
  if (url.protocol === 'rediss:') auth.tls = {};
  return { node: { host: url.hostname, port: url.port ? Number(url.port) : 6379 }, auth };
}

/** host:port list for logs; credentials never appear. */
function describeTargets(options: RedisStoreOptions): string {
  const urls =
    options.clusterUrls && options.clusterUrls.length > 0
      ? options.clusterUrls
      : options.url
        ? [options.url]
        : [];
  return urls
    .map((u) => {
      try {
        const { node } = parseRedisUrl(u);
        return `${node.host}:${node.port}`;
      } catch {
        return '(invalid)';
      }
    })
    .join(',');
}
