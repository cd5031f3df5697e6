import { spawnSync } from 'node:child_process';
import { Cluster, type Redis } from 'ioredis';
import { RedisQuarantineState, type RedisQuarantineOptions } from '../../src/quarantine/redis';
import { quarantineKeys } from '../../src/quarantine/scripts';
import {
  type QuarantineEntry,
  type QuarantineEvent,
  type QuarantineRule,
} from '../../src/quarantine/types';
import {
  redisForSuite,
  startRedis,
  startRedisCluster,
  type RedisCluster,
  type RedisProcess,
} from '../helpers/redis';
import { settlesWithin, waitFor } from '../helpers/wait';
import {
  CALLER,
  describeQuarantineContract,
  RULE as CONTRACT_RULE,
} from '../contracts/quarantine.contract';

const RULE: QuarantineRule = { ...CONTRACT_RULE, denials: 10, windowMs: 5000 };

/** How long pub/sub may take to reach another replica in these tests ("promptly"). */
const PROPAGATION_MS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How many script calls Redis refused as arriving after their deadline. */
function lateRefusals(redis: RedisProcess): number {
  const info = spawnSync('redis-cli', ['-p', String(redis.port), 'info', 'errorstats'], {
    encoding: 'utf8',
  }).stdout;
  const match = /errorstat_GATEHOUSE_LATE:count=(\d+)/.exec(info);
  return match ? Number(match[1]) : 0;
}

interface Replica {
  readonly name: string;
  readonly state: RedisQuarantineState;
  readonly errors: Error[];
}

/** Replicas of one mesh: every state shares the key prefix and one event log. */
class Mesh {
  readonly events: { replica: string; event: QuarantineEvent }[] = [];
  readonly replicas: Replica[] = [];
  private readonly connections: Redis[] = [];

  constructor(
    private readonly redis: RedisProcess,
    readonly keyPrefix: string,
  ) {}

  async replica(
    name: string,
    options: Partial<RedisQuarantineOptions> = {},
    waitReady = true,
  ): Promise<Replica> {
    const client = this.redis.client();
    const subscriber = this.redis.client();
    for (const c of [client, subscriber]) {
      c.on('error', () => undefined);
      this.connections.push(c);
    }
    const errors: Error[] = [];
    const state = new RedisQuarantineState({
      client,
      subscriber,
      keyPrefix: this.keyPrefix,
      // Long, so propagation in these tests is pub/sub's doing, not the resync's.
      resyncMs: 60_000,
      sweepMs: 50,
      timeoutMs: 300,
      onEvent: (event) => this.events.push({ replica: name, event }),
      onError: (err) => errors.push(err),
      ...options,
    });
    const replica = { name, state, errors };
    this.replicas.push(replica);
    if (waitReady) expect(await settlesWithin(state.ready(), 5000)).toBe(true);
    return replica;
  }

  eventsOf(type: 'enter' | 'leave', caller?: string) {
    return this.events.filter(
      (e) => e.event.type === type && (caller === undefined || e.event.entry.caller === caller),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.state.close()));
    for (const c of this.connections) c.disconnect();
  }
}

describe('RedisQuarantineState: one replica on a real Redis', () => {
  const redis = redisForSuite();
  let n = 0;

  describeQuarantineContract('redis', async (options) => {
    const client = redis().client();
    const subscriber = redis().client();
    const state = new RedisQuarantineState({
      client,
      subscriber,
      // A prefix per state: its keys and its channel are its own.
      keyPrefix: `contract${++n}`,
      resyncMs: 60_000,
      timeoutMs: 1000,
      ...options,
    });
    await state.ready();
    return {
      state,
      close: async () => {
        client.disconnect();
        subscriber.disconnect();
      },
    };
  });
});

describe('RedisQuarantineState: replicas sharing one real Redis', () => {
  let redis: RedisProcess;
  let mesh: Mesh;
  let n = 0;

  beforeAll(async () => {
    redis = await startRedis();
  });

  beforeEach(() => {
    // A prefix per test: its keys and its channel are its own.
    mesh = new Mesh(redis, `qt${++n}`);
  });

  afterEach(async () => {
    await mesh.close();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  test('2×10 concurrent denials with threshold 10: exactly one enter, one resolved entry, seen by both', async () => {
    const a = await mesh.replica('a');
    const b = await mesh.replica('b');
    const callers = Array.from({ length: 5 }, (_, i) => `${CALLER}-${i}`);
    const results = await Promise.all(
      callers.flatMap((caller) =>
        Array.from({ length: 10 }, () => [
          a.state.recordDenial(caller, RULE),
          b.state.recordDenial(caller, RULE),
        ]).flat(),
      ),
    );
    for (const caller of callers) {
      const entered = results.filter((r) => r?.caller === caller);
      expect(entered).toHaveLength(1);
      expect(entered[0]).toMatchObject({ caller, policy: 'payments', denials: 10, dryRun: false });
      expect(entered[0]!.until - entered[0]!.since).toBe(RULE.durationMs);
      expect(mesh.eventsOf('enter', caller)).toHaveLength(1);
      expect(mesh.eventsOf('enter', caller)[0]!.event.entry).toEqual(entered[0]);
    }
    expect(results.filter((r) => r !== undefined)).toHaveLength(callers.length);

    // Both replicas deny every one of them: the tripping replica at once, the other via pub/sub.
    await waitFor(
      () =>
        callers.every((c) => a.state.current(c) !== undefined && b.state.current(c) !== undefined),
      'callers.every((c) => a.state.current(c) !== undefined && b.state.current(c) !== undefined)',
      PROPAGATION_MS,
    );
    expect(a.state.activeCounts()).toEqual({ enforce: 5, dryRun: 0 });
    expect(b.state.activeCounts()).toEqual({ enforce: 5, dryRun: 0 });

    // More denials while quarantined: no re-entry, no extension.
    const before = a.state.current(callers[0]!)!;
    await Promise.all(Array.from({ length: 20 }, () => b.state.recordDenial(callers[0]!, RULE)));
    expect(mesh.eventsOf('enter')).toHaveLength(callers.length);
    expect((await a.state.list()).find((e) => e.caller === callers[0])).toEqual(before);
    expect(a.errors).toEqual([]);
    expect(b.errors).toEqual([]);
  });

  test('release on one replica: the other stops denying promptly, exactly one leave(released)', async () => {
    const a = await mesh.replica('a');
    const b = await mesh.replica('b');
    const results = await Promise.all(
      Array.from({ length: RULE.denials }, () => a.state.recordDenial(CALLER, RULE)),
    );
    const entry = results.find((r) => r !== undefined)!;
    expect(entry).toBeDefined();
    await waitFor(
      () => b.state.current(CALLER) !== undefined,
      'b.state.current(CALLER) !== undefined',
      PROPAGATION_MS,
    );

    expect(await b.state.release(CALLER)).toEqual(entry);
    expect(b.state.current(CALLER)).toBeUndefined();
    await waitFor(
      () => a.state.current(CALLER) === undefined,
      'a.state.current(CALLER) === undefined',
      PROPAGATION_MS,
    );
    expect(await a.state.release(CALLER)).toBeUndefined();
    expect(await a.state.list()).toEqual([]);

    // Negative, so time-based: long enough for a second (wrong) leave to arrive over pub/sub.
    await sleep(200);
    const leaves = mesh.eventsOf('leave');
    expect(leaves).toEqual([{ replica: 'b', event: { type: 'leave', entry, cause: 'released' } }]);
  });

  test('expiry: both stop denying, exactly one leave(expired) across the mesh', async () => {
    const a = await mesh.replica('a');
    const b = await mesh.replica('b');
    const rule = { ...RULE, denials: 2, durationMs: 300 };
    const [x, y] = await Promise.all([
      a.state.recordDenial(CALLER, rule),
      b.state.recordDenial(CALLER, rule),
    ]);
    const entry = (x ?? y) as QuarantineEntry;
    expect(entry).toBeDefined();
    await waitFor(
      () => a.state.current(CALLER) !== undefined && b.state.current(CALLER) !== undefined,
      'a.state.current(CALLER) !== undefined && b.state.current(CALLER) !== undefined',
      PROPAGATION_MS,
    );

    await waitFor(
      () => mesh.eventsOf('leave').length > 0,
      "mesh.eventsOf('leave').length > 0",
      3000,
    );
    expect(a.state.current(CALLER)).toBeUndefined();
    expect(b.state.current(CALLER)).toBeUndefined();
    // Let every sweep on both replicas have its go at it.
    await sleep(400);
    expect(mesh.eventsOf('leave').map((e) => e.event)).toEqual([
      { type: 'leave', entry, cause: 'expired' },
    ]);
    expect(await a.state.list()).toEqual([]);
    expect(a.errors).toEqual([]);
    expect(b.errors).toEqual([]);
  });

  test('an enforce rule tripping replaces a dry-run entry on every replica', async () => {
    const a = await mesh.replica('a');
    const b = await mesh.replica('b');
    const dry = { ...RULE, policy: 'payments-shadow', denials: 2, dryRun: true };
    const enforce = { ...RULE, denials: 2 };
    await a.state.recordDenial(CALLER, dry);
    const dryEntry = await a.state.recordDenial(CALLER, dry);
    expect(dryEntry).toMatchObject({ dryRun: true, policy: 'payments-shadow' });
    await waitFor(
      () => b.state.current(CALLER)?.dryRun === true,
      'b.state.current(CALLER)?.dryRun === true',
      PROPAGATION_MS,
    );
    // Dry-run denials are covered by the dry-run entry.
    for (let i = 0; i < 4; i++) expect(await b.state.recordDenial(CALLER, dry)).toBeUndefined();

    await b.state.recordDenial(CALLER, enforce);
    const enforced = await b.state.recordDenial(CALLER, enforce);
    expect(enforced).toMatchObject({ dryRun: false, policy: 'payments' });
    await waitFor(
      () => a.state.current(CALLER)?.dryRun === false,
      'a.state.current(CALLER)?.dryRun === false',
      PROPAGATION_MS,
    );
    expect(mesh.eventsOf('enter').map((e) => e.event.entry)).toEqual([dryEntry, enforced]);
  });

  test('a replica started after the entry was created sees it once ready()', async () => {
    const a = await mesh.replica('a');
    const results = await Promise.all(
      Array.from({ length: RULE.denials }, () => a.state.recordDenial(CALLER, RULE)),
    );
    const entry = results.find((r) => r !== undefined);
    expect(entry).toBeDefined();
    const late = await mesh.replica('late');
    expect(late.state.current(CALLER)).toEqual(entry);
    expect(await late.state.list()).toEqual([entry]);
  });

  test('the periodic resync repairs a mirror that missed a change', async () => {
    const a = await mesh.replica('a', { resyncMs: 100 });
    const keys = quarantineKeys(mesh.keyPrefix);
    const direct = redis.client();
    try {
      // Written behind every replica's back: no message, only the resync can find it.
      const now = Date.now();
      const entry: QuarantineEntry = {
        caller: CALLER,
        policy: 'payments',
        since: now,
        until: now + 60_000,
        denials: 10,
        dryRun: false,
      };
      await direct.hset(keys.entries, CALLER, JSON.stringify(entry));
      await waitFor(
        () => a.state.current(CALLER) !== undefined,
        'a.state.current(CALLER) !== undefined',
        2000,
      );
      await direct.hdel(keys.entries, CALLER);
      await waitFor(
        () => a.state.current(CALLER) === undefined,
        'a.state.current(CALLER) === undefined',
        2000,
      );
    } finally {
      direct.disconnect();
    }
  });
});

describe('RedisQuarantineState: Redis frozen, stopped and restarted', () => {
  let redis: RedisProcess;
  let mesh: Mesh;

  beforeAll(async () => {
    redis = await startRedis();
    mesh = new Mesh(redis, 'faults');
  });

  afterAll(async () => {
    try {
      redis?.thaw();
    } catch {
      /* not running */
    }
    await mesh?.close();
    await redis?.stop();
  });

  test('frozen: recordDenial resolves undefined within its budget, onError is told, current() answers from the mirror', async () => {
    const a = await mesh.replica('a', { resyncMs: 200 });
    const b = await mesh.replica('b', { resyncMs: 200 });
    const one = { ...RULE, denials: 1 };
    const entry = await a.state.recordDenial(CALLER, one);
    expect(entry).toBeDefined();
    await waitFor(
      () => b.state.current(CALLER) !== undefined,
      'b.state.current(CALLER) !== undefined',
      PROPAGATION_MS,
    );

    const other = `${CALLER}-frozen`;
    redis.freeze();
    try {
      const start = Date.now();
      const results = await Promise.all([
        a.state.recordDenial(other, one),
        b.state.recordDenial(other, one),
      ]);
      const elapsed = Date.now() - start;
      expect(results).toEqual([undefined, undefined]);
      // timeoutMs 300 + reply grace 200, with slack for a loaded machine.
      expect(elapsed).toBeLessThan(1500);
      expect(a.errors.length).toBeGreaterThan(0);
      expect(b.errors.length).toBeGreaterThan(0);
      await expect(a.state.release(CALLER)).rejects.toThrow();

      // The hot path never waits on Redis and keeps what it knew.
      expect(a.state.current(CALLER)).toEqual(entry);
      expect(b.state.current(CALLER)).toEqual(entry);
      // Several resyncs fail meanwhile (each tells onError); the mirror must survive them.
      const failedBefore = b.errors.length;
      await waitFor(() => b.errors.length >= failedBefore + 2, 'two failed resyncs on b', 5000);
      expect(b.state.current(CALLER)).toEqual(entry);
    } finally {
      redis.thaw();
    }

    // The calls given up on ran once Redis woke: past their deadline, they changed nothing.
    await waitFor(() => lateRefusals(redis) >= 2, 'lateRefusals(redis) >= 2', 3000);
    const listed = await a.state.list();
    expect(listed.map((e) => e.caller)).toEqual([CALLER]);
    expect(a.state.current(other)).toBeUndefined();
    expect(b.state.current(other)).toBeUndefined();
    expect(mesh.eventsOf('enter')).toHaveLength(1);
    expect(mesh.eventsOf('leave')).toHaveLength(0);

    // And it works again.
    const again = await b.state.recordDenial(other, one);
    expect(again).toMatchObject({ caller: other });
  });

  test('restarted without its data: the replicas drop what Redis no longer has', async () => {
    const [a] = mesh.replicas;
    expect(a!.state.current(CALLER)).toBeDefined();
    await redis.stop();
    const errorsBefore = a!.errors.length;
    await waitFor(() => a!.errors.length > errorsBefore, 'a!.errors.length > errorsBefore', 2000);
    expect(a!.state.current(CALLER)).toBeDefined();
    await redis.restart();
    // Resync (every 200 ms) finds an empty Redis whose change counter restarted at 0.
    await waitFor(
      () => mesh.replicas.every((r) => r.state.current(CALLER) === undefined),
      'mesh.replicas.every((r) => r.state.current(CALLER) === undefined)',
      5000,
    );

    // Pub/sub resumed after reconnect: a new entry reaches the other replica.
    const entry = await a!.state.recordDenial(CALLER, { ...RULE, denials: 1 });
    expect(entry).toBeDefined();
    await waitFor(
      () => mesh.replicas.every((r) => r.state.current(CALLER) !== undefined),
      'mesh.replicas.every((r) => r.state.current(CALLER) !== undefined)',
      3000,
    );
  });
});

describe('RedisQuarantineState on a Redis Cluster', () => {
  let cluster: RedisCluster;
  const connections: Cluster[] = [];
  const states: RedisQuarantineState[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster(3, 0);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(states.map((s) => s.close()));
    for (const c of connections) c.disconnect();
    await cluster?.stop();
  });

  function clusterReplica(events: QuarantineEvent[], errors: Error[]): RedisQuarantineState {
    const connect = (): Cluster => {
      const c = new Cluster(
        cluster.urls.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })),
      );
      c.on('error', () => undefined);
      connections.push(c);
      return c;
    };
    const state = new RedisQuarantineState({
      client: connect(),
      subscriber: connect(),
      resyncMs: 60_000,
      sweepMs: 50,
      onEvent: (e) => events.push(e),
      onError: (e) => errors.push(e),
    });
    states.push(state);
    return state;
  }

  test('one script touches every key (one hash tag); changes reach the other replica over cluster pub/sub', async () => {
    const events: QuarantineEvent[] = [];
    const errors: Error[] = [];
    const a = clusterReplica(events, errors);
    const b = clusterReplica(events, errors);
    expect(await settlesWithin(Promise.all([a.ready(), b.ready()]), 10_000)).toBe(true);

    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? a : b).recordDenial(CALLER, { ...RULE, denials: 5 }),
      ),
    );
    const entry = results.find((r) => r !== undefined);
    expect(results.filter((r) => r !== undefined)).toHaveLength(1);
    await waitFor(
      () => a.current(CALLER) !== undefined && b.current(CALLER) !== undefined,
      'a.current(CALLER) !== undefined && b.current(CALLER) !== undefined',
      PROPAGATION_MS,
    );
    expect(await a.release(CALLER)).toEqual(entry);
    await waitFor(
      () => b.current(CALLER) === undefined,
      'b.current(CALLER) === undefined',
      PROPAGATION_MS,
    );
    expect(events.map((e) => e.type)).toEqual(['enter', 'leave']);
    expect(errors).toEqual([]);
  });
});
