import type { Logger } from 'pino';
import type { GatehouseOptions } from '../app';
import type { AuditLog } from '../audit/audit-log';
import { MemoryGrantTracker } from '../grants/memory';
import { RedisGrantTracker } from '../grants/redis';
import type { GrantTracker } from '../grants/types';
import type { Metrics } from '../metrics/metrics';
import { MemoryQuarantineState } from '../quarantine/memory';
import { RedisQuarantineState } from '../quarantine/redis';
import {
  subjectCaller,
  type QuarantineEntry,
  type QuarantineEvent,
  type QuarantineState,
} from '../quarantine/types';
import { MemoryBucketStore } from '../ratelimit/memory-store';
import { RedisBucketStore } from '../ratelimit/redis-store';
import type { BucketStore } from '../ratelimit/types';
import { RedisConnections } from '../redis/connections';
import { describeBackendError, EpisodeLog } from '../util/episode-log';

/** Startup waits this long for Redis; after it, checks follow onBackendError until it answers. */
const REDIS_STARTUP_WAIT_MS = 2000;

/** Entries as operators know them: by caller, with the policy whose workloads it is isolated from. */
export async function listQuarantine(state: QuarantineState): Promise<QuarantineEntry[]> {
  return (await state.list()).map((e) => ({ ...e, caller: subjectCaller(e.caller) }));
}

/** Releases every isolation of the caller: mesh-wide and per policy. The first released entry answers. */
export async function releaseQuarantine(
  state: QuarantineState,
  caller: string,
): Promise<QuarantineEntry | undefined> {
  const subjects = [
    caller,
    ...(await state.list())
      .map((e) => e.caller)
      .filter((s) => s !== caller && subjectCaller(s) === caller),
  ];
  let first: QuarantineEntry | undefined;
  for (const subject of subjects) {
    const released = await state.release(subject);
    if (released !== undefined) first ??= { ...released, caller };
  }
  return first;
}

/**
 * The state checks share across replicas: rate-limit buckets, quarantine and grant use. All in
 * Redis when configured (over the connections of one RedisConnections), else in this process.
 */
export interface EnforcementState {
  readonly store: BucketStore;
  readonly quarantine: QuarantineState;
  readonly grants: GrantTracker;
  /** Pushes the last grant uses, closes the stores, then their connections. */
  close(): Promise<void>;
}

export async function openEnforcementState(
  options: Pick<GatehouseOptions, 'redis' | 'buckets'>,
  log: Logger,
  metrics: Metrics,
  audit: AuditLog,
): Promise<EnforcementState> {
  const redis = options.redis ? await openRedis(options.redis, log) : undefined;
  const store = redis
    ? new RedisBucketStore({
        connections: redis,
        log,
        onBreakerChange: (state) => metrics.breakerChanged(state),
      })
    : new MemoryBucketStore(options.buckets);
  const onEvent = (event: QuarantineEvent): void => {
    const e = event.entry;
    const details = {
      caller: subjectCaller(e.caller),
      policy: e.policy,
      since: new Date(e.since).toISOString(),
      until: new Date(e.until).toISOString(),
      denials: e.denials,
      dry_run: e.dryRun,
    };
    if (event.type === 'enter') {
      audit.event(
        'quarantine.enter',
        details,
        e.dryRun ? 'would quarantine caller (dry-run)' : 'caller quarantined',
      );
      metrics.quarantineEvent('enter', 'denials', e.dryRun);
      log.warn(details, e.dryRun ? 'caller would be quarantined (dry-run)' : 'caller quarantined');
    } else {
      audit.event('quarantine.leave', { ...details, cause: event.cause }, 'caller left quarantine');
      metrics.quarantineEvent('leave', event.cause, e.dryRun);
      log.info({ ...details, cause: event.cause }, 'caller left quarantine');
    }
  };
  // Once per episode, not per denial: a frozen Redis fails every quarantine count at once.
  const quarantineEpisode = new EpisodeLog(log, {
    failing:
      'quarantine state unavailable: denials are not counted towards quarantine and the mirror is not refreshed',
    recovered: 'quarantine state available again',
    unit: 'failedOperations',
  });
  const grantsEpisode = new EpisodeLog(log, {
    failing: 'grant usage state unavailable: uses are kept in this process until Redis answers',
    recovered: 'grant usage state available again',
    unit: 'failedSyncs',
  });
  const quarantineError = (err: Error): void => {
    metrics.stateError('quarantine');
    quarantineEpisode.failed(describeBackendError(err));
  };
  const grantsError = (err: Error): void => {
    metrics.stateError('grants');
    grantsEpisode.failed(describeBackendError(err));
  };
  let quarantine: QuarantineState;
  let grants: GrantTracker;
  if (redis) {
    const client = redis.state;
    const subscriber = redis.subscriber;
    quarantine = new RedisQuarantineState({
      client,
      subscriber,
      onEvent,
      onError: quarantineError,
      onSuccess: () => quarantineEpisode.recovered(),
    });
    // Uses reach Redis within 2 s: a report from any replica is that fresh, at one script call per policy version per replica.
    grants = new RedisGrantTracker({
      client,
      flushMs: 2000,
      onError: grantsError,
      onSuccess: () => grantsEpisode.recovered(),
    });
    // The first sync now, not at the first timer tick: readiness below must not cost flushMs.
    grants.sync().catch(() => undefined);
    // Startup does not wait long for shared state: an unknown quarantine allows, an unknown grant is not dormant.
    await Promise.race([
      Promise.all([quarantine.ready(), grants.ready()]),
      new Promise((resolve) => setTimeout(resolve, REDIS_STARTUP_WAIT_MS).unref()),
    ]);
  } else {
    quarantine = new MemoryQuarantineState({ onEvent, onError: quarantineError });
    grants = new MemoryGrantTracker({ onWarn: (message: string) => log.warn(message) });
  }
  metrics.countQuarantinedWith(() => quarantine.activeCounts());
  metrics.countDormantGrantsWith(() => grants.dormantCount(Date.now()));
  return {
    store,
    quarantine,
    grants,
    close: async () => {
      await Promise.allSettled([grants.sync()]);
      await Promise.allSettled([quarantine.close(), grants.close(), store.close()]);
      await redis?.close();
    },
  };
}

async function openRedis(
  target: NonNullable<GatehouseOptions['redis']>,
  log: Logger,
): Promise<RedisConnections> {
  const redis = new RedisConnections(target, log);
  if (!(await redis.waitUntilConnected(REDIS_STARTUP_WAIT_MS))) {
    log.warn('starting without Redis: limited routes follow onBackendError until it is reachable');
  }
  return redis;
}
