import Redis, { Cluster } from 'ioredis';
import { RedisGrantTracker, type RedisGrantTrackerOptions } from '../../src/grants/redis';
import { grantVersionKey } from '../../src/grants/sync-script';
import { freePort } from '../helpers/ports';
import { redisForSuite, startRedis, startRedisCluster, type RedisProcess } from '../helpers/redis';
import { settlesWithin, waitFor } from '../helpers/wait';
import {
  API,
  DAY,
  describeGrantTrackerContract,
  grant,
  T0,
  WEB,
} from '../contracts/grants.contract';

describe('RedisGrantTracker: one replica on a real redis-server', () => {
  const redis = redisForSuite();
  let n = 0;

  describeGrantTrackerContract('redis', async () => {
    const client = redis().client();
    // The timer is off: the contract drives sync itself.
    const tracker = new RedisGrantTracker({
      client,
      keyPrefix: `contract${++n}`,
      flushMs: 3_600_000,
      timeoutMs: 1000,
    });
    return { tracker, close: async () => client.disconnect() };
  });
});

describe('RedisGrantTracker: replicas sharing one real redis-server', () => {
  let redis: RedisProcess;
  let admin: Redis;
  const clients: (Redis | Cluster)[] = [];
  const trackers: RedisGrantTracker[] = [];
  let prefixes = 0;

  /** A replica: its own connection and tracker; the timer is off unless asked, so tests drive sync. */
  function replica(
    prefix: string,
    options: Partial<RedisGrantTrackerOptions> = {},
  ): RedisGrantTracker {
    const client = redis.client();
    client.on('error', () => undefined);
    clients.push(client);
    const tracker = new RedisGrantTracker({
      client,
      keyPrefix: prefix,
      flushMs: 3_600_000,
      timeoutMs: 1000,
      ...options,
    });
    trackers.push(tracker);
    return tracker;
  }
  const newPrefix = (): string => `t${++prefixes}`;

  beforeAll(async () => {
    redis = await startRedis();
    admin = redis.client();
  });
  afterAll(async () => {
    await Promise.all(trackers.map((t) => t.close()));
    for (const c of clients) c.disconnect();
    admin.disconnect();
    await redis.stop();
  });

  test('a use on replica A reaches replica B; a caller that used nothing is dormant on both; the first sighting sets since', async () => {
    const prefix = newPrefix();
    const key = grantVersionKey(prefix, 'orders', 'v1');
    const a = replica(prefix);
    const b = replica(prefix);
    const g = grant();

    a.setGrants([g], T0);
    await a.sync();
    // B sees the version ten days later: HSETNX keeps A's clock.
    b.setGrants([g], T0 + 10 * DAY);
    await b.sync();
    expect(await admin.hget(key, 'since')).toBe(String(T0));
    expect(b.isDormant(g, API, T0 + 30 * DAY)).toBe(true);

    a.used(g, WEB, T0 + 20 * DAY);
    expect(a.isDormant(g, WEB, T0 + 45 * DAY)).toBe(false); // its own use counts before any flush
    expect(b.isDormant(g, WEB, T0 + 45 * DAY)).toBe(true); // not flushed yet
    await a.sync();
    await b.sync();
    expect(await admin.hget(key, `u:read|0|${WEB}`)).toBe(String(T0 + 20 * DAY));
    expect(b.isDormant(g, WEB, T0 + 45 * DAY)).toBe(false);
    expect(b.isDormant(g, WEB, T0 + 50 * DAY)).toBe(true);
    expect(b.isDormant(g, API, T0 + 35 * DAY)).toBe(true);

    const rows = await b.report(T0 + 45 * DAY);
    expect(rows.map((r) => [r.caller, r.lastUsed, r.since, r.dormant])).toEqual([
      [WEB, T0 + 20 * DAY, T0, false],
    ]);

    // State outlives the longest idle limit (twice it plus a day), then vanishes on its own.
    const ttl = await admin.pttl(key);
    expect(ttl).toBeGreaterThan(60 * DAY);
    expect(ttl).toBeLessThanOrEqual(61 * DAY);
  });

  test('a late flush of an older use never moves lastUsed back', async () => {
    const prefix = newPrefix();
    const key = grantVersionKey(prefix, 'orders', 'v1');
    const a = replica(prefix);
    const b = replica(prefix);
    const g = grant();
    a.setGrants([g], T0);
    b.setGrants([g], T0);
    await Promise.all([a.sync(), b.sync()]);

    a.used(g, WEB, T0 + 20 * DAY);
    b.used(g, WEB, T0 + 5 * DAY);
    await a.sync();
    await b.sync();
    expect(await admin.hget(key, `u:read|0|${WEB}`)).toBe(String(T0 + 20 * DAY));
    expect(b.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
    await a.sync();
    expect(a.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
  });

  test('a changed policy is a new key with a fresh clock', async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    const v1 = grant();
    a.setGrants([v1], T0);
    await a.sync();
    expect(a.isDormant(v1, WEB, T0 + 40 * DAY)).toBe(true);
    const v2 = grant({ version: 'v2' });
    a.setGrants([v2], T0 + 40 * DAY);
    await a.sync();
    expect(a.isDormant(v2, WEB, T0 + 40 * DAY)).toBe(false);
    expect(a.isDormant(v1, WEB, T0 + 40 * DAY)).toBe(false); // forgotten locally
    expect(await admin.hget(grantVersionKey(prefix, 'orders', 'v2'), 'since')).toBe(
      String(T0 + 40 * DAY),
    );
    expect((await a.report(T0 + 40 * DAY)).map((r) => r.version)).toEqual(['v2']);
  });

  test('renewals on A, per caller and grant-wide, are seen by B after its sync', async () => {
    const prefix = newPrefix();
    const key = grantVersionKey(prefix, 'orders', 'v1');
    const a = replica(prefix);
    const b = replica(prefix);
    const read = grant();
    const write = grant({ rule: 'write' });
    a.setGrants([read, write], T0);
    b.setGrants([read, write], T0);
    await Promise.all([a.sync(), b.sync()]);
    b.used(read, API, T0 + DAY);
    await b.sync(); // A learns of API's use only through renew's own pull

    const now = T0 + 40 * DAY;
    expect(b.isDormant(read, WEB, now)).toBe(true);
    expect(await a.renew({ policy: 'orders', rule: 'read', caller: WEB }, now)).toBe(1);
    expect(await admin.hget(key, `r:read|0|${WEB}`)).toBe(String(now));
    await b.sync();
    expect(b.isDormant(read, WEB, now)).toBe(false);
    expect(b.isDormant(read, WEB, now + 30 * DAY)).toBe(true);
    expect(b.isDormant(read, API, now)).toBe(true);
    expect(b.isDormant(write, WEB, now)).toBe(true);

    // Grant-wide: read has two usages (API's use, WEB's renewal), write none (counts once).
    const later = now + DAY;
    expect(await a.renew({ policy: 'orders' }, later)).toBe(3);
    expect(await admin.hget(key, 'g:read|0')).toBe(String(later));
    expect(await admin.hget(key, 'g:write|0')).toBe(String(later));
    await b.sync();
    for (const caller of [WEB, API, 'spiffe://shop.example/ns/checkout/sa/new']) {
      expect(b.isDormant(read, caller, later)).toBe(false);
      expect(b.isDormant(write, caller, later + 30 * DAY - 1)).toBe(false);
      expect(b.isDormant(write, caller, later + 30 * DAY)).toBe(true);
    }
  });

  test('a restarted replica keeps lastUsed: close flushes, the new tracker pulls', async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    const g = grant();
    a.setGrants([g], T0);
    await a.sync();
    a.used(g, WEB, T0 + 20 * DAY);
    await a.close(); // no explicit sync: close pushes what is buffered

    const restarted = replica(prefix);
    restarted.setGrants([g], T0 + 45 * DAY);
    await restarted.ready();
    expect(restarted.isDormant(g, WEB, T0 + 50 * DAY - 1)).toBe(false);
    expect(restarted.isDormant(g, WEB, T0 + 50 * DAY)).toBe(true);
    expect(restarted.isDormant(g, API, T0 + 45 * DAY)).toBe(true); // since is still A's T0
  });

  test('before its first pull a tracker calls nothing dormant', async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    const g = grant();
    a.setGrants([g], T0);
    await a.sync();

    const fresh = replica(prefix);
    const ready = fresh.ready();
    fresh.setGrants([g], T0 + 100 * DAY);
    // Even long after its own first sighting: without Redis's state it knows nothing.
    expect(fresh.isDormant(g, API, T0 + 1000 * DAY)).toBe(false);
    await ready;
    expect(fresh.isDormant(g, API, T0 + 100 * DAY)).toBe(true);
  });

  test('with Redis unreachable from the start: isDormant is false, sync rejects, onError is told, ready waits', async () => {
    const port = await freePort(); // nothing listens there
    const client = new Redis(port, '127.0.0.1', {
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => 200,
    });
    client.on('error', () => undefined);
    clients.push(client);
    const errors: Error[] = [];
    const t = new RedisGrantTracker({
      client,
      keyPrefix: newPrefix(),
      flushMs: 3_600_000,
      timeoutMs: 300,
      onError: (e) => errors.push(e),
    });
    trackers.push(t);
    const g = grant();
    t.setGrants([g], T0);
    t.used(g, WEB, T0);
    expect(t.isDormant(g, API, T0 + 1000 * DAY)).toBe(false);
    await expect(t.sync()).rejects.toThrow();
    expect(errors.length).toBeGreaterThan(0);
    expect(await settlesWithin(t.ready(), 200)).toBe(false);
    await expect(t.report(T0)).rejects.toThrow();
  });

  test('the timer flushes in the background', async () => {
    const prefix = newPrefix();
    const key = grantVersionKey(prefix, 'orders', 'v1');
    const a = replica(prefix, { flushMs: 50 });
    const g = grant();
    a.setGrants([g], T0);
    await a.ready();
    a.used(g, WEB, T0 + DAY);
    await waitFor(
      async () => (await admin.hget(key, `u:read|0|${WEB}`)) === String(T0 + DAY),
      'the use to reach Redis',
      5000,
    );
  });
});

describe('RedisGrantTracker: Redis stops and comes back empty', () => {
  let redis: RedisProcess;
  let admin: Redis | undefined;
  const clients: Redis[] = [];
  const trackers: RedisGrantTracker[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await Promise.all(trackers.map((t) => t.close()));
    for (const c of clients) c.disconnect();
    admin?.disconnect();
    await redis.stop();
  });

  function replica(onError?: (e: Error) => void, maxPending?: number): RedisGrantTracker {
    const client = redis.client();
    client.on('error', () => undefined);
    clients.push(client);
    const t = new RedisGrantTracker({
      client,
      flushMs: 3_600_000,
      timeoutMs: 500,
      onError,
      maxPending,
    });
    trackers.push(t);
    return t;
  }

  test('hot path keeps answering, onError is told, buffered uses and the old state are written back once Redis returns', async () => {
    const errors: Error[] = [];
    const a = replica((e) => errors.push(e), 2);
    const g = grant();
    a.setGrants([g], T0);
    await a.ready();
    const job = 'spiffe://shop.example/ns/checkout/sa/job';
    a.used(g, WEB, T0 + 10 * DAY);
    a.used(g, job, T0 + 12 * DAY); // flushed before the outage and never buffered again
    await a.sync();

    await redis.stop();
    expect(() => a.used(g, WEB, T0 + 20 * DAY)).not.toThrow();
    expect(() => a.used(g, API, T0 + 21 * DAY)).not.toThrow();
    // Over maxPending (2): kept locally, reported once.
    expect(() =>
      a.used(g, 'spiffe://shop.example/ns/checkout/sa/extra', T0 + 21 * DAY),
    ).not.toThrow();
    expect(errors.some((e) => e.message.includes('buffer full'))).toBe(true);
    expect(a.isDormant(g, WEB, T0 + 45 * DAY)).toBe(false);
    expect(a.isDormant(g, 'spiffe://shop.example/ns/checkout/sa/other', T0 + 45 * DAY)).toBe(true);
    const before = errors.length;
    await expect(a.sync()).rejects.toThrow();
    expect(errors.length).toBeGreaterThan(before);
    // A failed flush keeps what it could not push.
    expect(a.isDormant(g, API, T0 + 50 * DAY)).toBe(false);

    // No persistence: Redis comes back empty. The tracker re-seeds the key from what it had
    // pulled before plus what it buffered since, instead of starting from nothing.
    await redis.restart();
    await waitFor(
      () =>
        a.sync().then(
          () => true,
          () => false,
        ),
      'a sync to succeed after the restart',
      15_000,
    );
    admin = redis.client();
    const key = grantVersionKey('gatehouse', 'orders', 'v1');
    expect(await admin.hget(key, 'since')).toBe(String(T0));
    expect(await admin.hget(key, `u:read|0|${WEB}`)).toBe(String(T0 + 20 * DAY));
    expect(await admin.hget(key, `u:read|0|${API}`)).toBe(String(T0 + 21 * DAY));
    expect(await admin.hget(key, `u:read|0|${job}`)).toBe(String(T0 + 12 * DAY));

    const b = replica();
    b.setGrants([g], T0 + 45 * DAY);
    await b.ready();
    expect(b.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
    expect(b.isDormant(g, API, T0 + 50 * DAY)).toBe(false);
    expect(b.isDormant(g, job, T0 + 42 * DAY - 1)).toBe(false);
    expect(b.isDormant(g, 'spiffe://shop.example/ns/checkout/sa/other', T0 + 45 * DAY)).toBe(true);
  }, 60_000);
});

describe('RedisGrantTracker on Redis Cluster', () => {
  test('the script runs against the cluster and replicas share state', async () => {
    const cluster = await startRedisCluster(3, 0);
    const seeds = cluster.urls.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) }));
    const clients = [new Cluster(seeds), new Cluster(seeds)];
    const trackers = clients.map(
      (client) => new RedisGrantTracker({ client, flushMs: 3_600_000, timeoutMs: 2000 }),
    );
    try {
      const [a, b] = trackers as [RedisGrantTracker, RedisGrantTracker];
      const g = grant();
      a.setGrants([g], T0);
      await a.ready();
      a.used(g, WEB, T0 + 20 * DAY);
      await a.sync();
      b.setGrants([g], T0 + 30 * DAY);
      await b.ready();
      expect(b.isDormant(g, WEB, T0 + 45 * DAY)).toBe(false);
      expect(b.isDormant(g, API, T0 + 30 * DAY)).toBe(true);
    } finally {
      await Promise.all(trackers.map((t) => t.close()));
      for (const c of clients) c.disconnect();
      await cluster.stop();
    }
  }, 60_000);
});
