import Redis, { Cluster, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { withDeadline } from '../util/deadline';
import { describeBackendError } from '../util/episode-log';

export interface RedisTarget {
  /** redis://[user:password@]host:port[/db] or rediss:// for TLS. */
  readonly url?: string;
  /** Seed nodes of a Redis Cluster, same URL form. */
  readonly clusterUrls?: readonly string[];
  /** The whole budget of one limited check's Redis work, in ms. */
  readonly timeoutMs: number;
}

/** How long background state (quarantine, grant use) may wait on one command: nothing waits on it. */
const BACKGROUND_COMMAND_TIMEOUT_MS = 2000;
const QUIT_DEADLINE_MS = 1000;

/**
 * Every connection this process holds to Redis, with its options, and the order they close in.
 *
 * - `buckets`: the check path. It fails at once while reconnecting (no offline queue, no
 *   retries, commands bounded by the check budget) so onBackendError decides, never a queue.
 * - `state`: quarantine and grant use. It queues while reconnecting and allows a longer
 *   command time, since no check waits on it.
 * - `subscriber`: quarantine's pub/sub, which needs a connection of its own.
 *
 * Connection trouble is logged once per state change, never per command; credentials never appear.
 */
export class RedisConnections {
  readonly kind: 'redis' | 'redis-cluster';
  readonly timeoutMs: number;
  readonly buckets: Redis | Cluster;
  private background: (Redis | Cluster)[] = [];
  private stateClient: Redis | Cluster | undefined;
  private subscriberClient: Redis | Cluster | undefined;
  private up = false;
  private closing = false;
  private errorLogged = false;

  constructor(target: RedisTarget, log: Logger) {
    const redisLog = log.child({ component: 'redis' });
    this.timeoutMs = target.timeoutMs;
    const common: RedisOptions = {
      commandTimeout: target.timeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    };
    if (target.clusterUrls && target.clusterUrls.length > 0) {
      this.kind = 'redis-cluster';
      const seeds = target.clusterUrls.map(parseRedisUrl);
      this.buckets = new Cluster(
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
      );
    } else if (target.url) {
      this.kind = 'redis';
      this.buckets = new Redis(target.url, common);
    } else {
      throw new Error('Redis needs a url or cluster urls');
    }
    const where = { backend: this.kind, target: describeTargets(target) };
    this.buckets.on('ready', () => {
      if (!this.up) redisLog.info(where, 'redis connected');
      this.up = true;
      this.errorLogged = false;
    });
    // Without an 'error' listener ioredis errors would crash the process.
    this.buckets.on('error', (err: Error) => {
      if (this.errorLogged) return;
      this.errorLogged = true;
      redisLog.warn(
        { ...where, cause: describeBackendError(err) },
        'redis connection error; reconnecting',
      );
    });
    this.buckets.on('close', () => {
      if (this.up && !this.closing)
        redisLog.warn({ backend: this.kind }, 'redis connection lost; reconnecting');
      this.up = false;
    });
  }

  /** The check connection is up. */
  get connected(): boolean {
    return this.up;
  }

  /** Quarantine and grant use share it; opened on first use. */
  get state(): Redis | Cluster {
    return (this.stateClient ??= this.openBackground());
  }

  /** Quarantine's pub/sub; opened on first use. */
  get subscriber(): Redis | Cluster {
    return (this.subscriberClient ??= this.openBackground());
  }

  /**
   * Waits up to `ms` for the first connection. Startup uses this so the first checks do not
   * all fall back to onBackendError; it never fails: an unreachable Redis is a state, not a crash.
   */
  async waitUntilConnected(ms: number): Promise<boolean> {
    if (this.up) return true;
    return new Promise<boolean>((resolve) => {
      const onReady = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.buckets.off('ready', onReady);
        resolve(false);
      }, ms);
      this.buckets.once('ready', onReady);
    });
  }

  /** Call after the stores closed (their last writes go through `state`); the check connection goes last. */
  async close(): Promise<void> {
    this.closing = true;
    const background = this.background;
    this.background = [];
    await Promise.allSettled(background.map((c) => quit(c)));
    await quit(this.buckets);
    this.up = false;
  }

  private openBackground(): Redis | Cluster {
    const overrides = {
      enableOfflineQueue: true,
      commandTimeout: BACKGROUND_COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 2,
    };
    const client =
      this.buckets instanceof Cluster
        ? this.buckets.duplicate(undefined, {
            enableOfflineQueue: true,
            redisOptions: { ...this.buckets.options.redisOptions, ...overrides },
          })
        : this.buckets.duplicate(overrides);
    // Errors reach the owners through their commands; without a listener ioredis would crash the process.
    client.on('error', () => undefined);
    this.background.push(client);
    return client;
  }
}

async function quit(client: Redis | Cluster): Promise<void> {
  // Not connected: nothing to flush, and a reconnect timer must not keep the process alive.
  if (client.status !== 'ready') return client.disconnect();
  try {
    await withDeadline(client.quit(), QUIT_DEADLINE_MS);
  } catch {
    client.disconnect();
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
function describeTargets(target: RedisTarget): string {
  const urls =
    target.clusterUrls && target.clusterUrls.length > 0
      ? target.clusterUrls
      : target.url
        ? [target.url]
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
