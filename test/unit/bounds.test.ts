import { MemoryBucketStore } from '../../src/ratelimit/memory-store';
import { LoadShedder, OVERLOAD_SUSTAIN_MS } from '../../src/server/shedding';
import { describeBackendError } from '../../src/util/episode-log';

const slow = { capacity: 5, refillPerSecond: 0.001 }; // refills in over an hour

describe('in-process bucket budget', () => {
  test('keys of any length are held as fixed-size digests', async () => {
    const store = new MemoryBucketStore({ now: () => 0 });
    for (const length of [1, 300, 70_000]) store.take('x'.repeat(length), slow, 1);
    const keys = [...(store as unknown as { buckets: Map<string, unknown> }).buckets.keys()];
    expect(keys.map((k) => Buffer.byteLength(k, 'latin1'))).toEqual([32, 32, 32]);
    await store.close();
  });

  test('distinct keys keep distinct buckets after hashing', async () => {
    const store = new MemoryBucketStore({ now: () => 0 });
    for (let i = 0; i < 5; i++) store.take('a'.repeat(500), slow, 1);
    expect(store.take('a'.repeat(500), slow, 1).allowed).toBe(false);
    expect(store.take(`${'a'.repeat(499)}b`, slow, 1).allowed).toBe(true);
    await store.close();
  });

  test('idle buckets are dropped by age even when they have not refilled', async () => {
    let now = 0;
    const store = new MemoryBucketStore({ now: () => now, maxIdleMs: 60_000 });
    for (let i = 0; i < 100; i++) store.take(`idle-${i}`, slow, 5);
    now = 30_000;
    store.take('busy', slow, 1);
    expect(store.sweep()).toBe(0);
    now = 61_000;
    expect(store.sweep()).toBe(100);
    expect(store.size).toBe(1);
    expect(store.evictedEarly).toBe(100);
    await store.close();
  });

  test('the count bound drops the least recently used bucket, never the one in use', async () => {
    let now = 0;
    const store = new MemoryBucketStore({ now: () => now, maxBuckets: 10 });
    for (let i = 0; i < 5; i++) store.take('hot', slow, 1); // empty now
    for (let i = 0; i < 1000; i++) {
      now++;
      store.take(`flood-${i}`, slow, 1);
      if (i % 5 === 0) expect(store.take('hot', slow, 1).allowed).toBe(false); // still remembered
    }
    expect(store.size).toBe(10);
    await store.close();
  });

  test('an evicted bucket comes back full: never more than capacity admitted at once', async () => {
    let now = 0;
    const store = new MemoryBucketStore({ now: () => now, maxBuckets: 2 });
    for (let i = 0; i < 5; i++) store.take('victim', slow, 1);
    store.take('a', slow, 1);
    store.take('b', slow, 1); // victim evicted
    now = 1;
    let admitted = 0;
    for (let i = 0; i < 20; i++) if (store.take('victim', slow, 1).allowed) admitted++;
    expect(admitted).toBe(slow.capacity);
    await store.close();
  });

  test('rejects a bound that would disable itself', () => {
    expect(() => new MemoryBucketStore({ maxBuckets: 0 })).toThrow(RangeError);
    expect(() => new MemoryBucketStore({ maxBuckets: Number.NaN })).toThrow(RangeError);
    expect(() => new MemoryBucketStore({ maxIdleMs: -1 })).toThrow(RangeError);
  });
});

describe('load shedding', () => {
  test('a check whose deadline has passed is not started', () => {
    const shed: string[] = [];
    const shedder = new LoadShedder({ maxInFlight: 0, maxEventLoopLagMs: 0 }, (r) => shed.push(r));
    expect(shedder.refuse(Date.now() - 1)).toBe('deadline');
    expect(shedder.refuse(Date.now() + 10_000)).toBeUndefined();
    expect(shedder.refuse(Infinity)).toBeUndefined();
    expect(shed).toEqual(['deadline']);
    shedder.close();
  });

  test('a check due sooner than checks have been taking is not started', async () => {
    const shedder = new LoadShedder({ maxInFlight: 0, maxEventLoopLagMs: 0 });
    for (let i = 0; i < 100; i++) {
      const done = shedder.begin();
      const until = performance.now() + 2;
      while (performance.now() < until);
      done();
    }
    expect(shedder.refuse(Date.now() + 1)).toBe('deadline');
    expect(shedder.refuse(Date.now() + 1000)).toBeUndefined();
    shedder.close();
  });

  test('in-flight checks are bounded', () => {
    const shedder = new LoadShedder({ maxInFlight: 2, maxEventLoopLagMs: 0 });
    const a = shedder.begin();
    shedder.begin();
    expect(shedder.refuse(Infinity)).toBe('in_flight');
    a();
    expect(shedder.refuse(Infinity)).toBeUndefined();
    expect(shedder.inFlight).toBe(1);
    shedder.close();
  });

  test('a sustained event-loop lag sheds; one long pause does not', async () => {
    const shedder = new LoadShedder({ maxInFlight: 0, maxEventLoopLagMs: 50 });
    const block = (ms: number): void => {
      const until = performance.now() + ms;
      while (performance.now() < until);
    };
    const tick = () => new Promise((r) => setTimeout(r, 25));
    await tick();
    block(300); // one pause
    await tick();
    await tick();
    expect(shedder.refuse(Infinity)).toBeUndefined();
    const started = performance.now();
    let refused: string | undefined;
    // A loop that stays behind: bounded at three sustain periods.
    while (refused === undefined && performance.now() - started < 3 * OVERLOAD_SUSTAIN_MS + 1000) {
      block(80);
      await new Promise((r) => setImmediate(r)); // busy again at once: no idle time between
      refused = shedder.refuse(Infinity);
    }
    expect(refused).toBe('event_loop_lag');
    // Caught up: checks are taken again.
    await tick();
    await tick();
    expect(shedder.refuse(Infinity)).toBeUndefined();
    shedder.close();
  });
});

describe('background errors in our words', () => {
  test.each([
    [
      new Error(
        'Reached the max retries per request limit (which is 2). Refer to "maxRetriesPerRequest" option for details.',
      ),
      'not connected',
    ],
    [new Error("Stream isn't writeable and enableOfflineQueue options is false"), 'not connected'],
    [new Error('Connection is closed.'), 'not connected'],
    [new Error('redis did not answer within 50 ms'), 'no answer in time'],
    [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' }),
      'connection refused',
    ],
    [
      Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
      'no space left on device',
    ],
    [
      Object.assign(new Error('NOSCRIPT No matching script. Please use EVAL.'), {
        name: 'ReplyError',
      }),
      'Redis refused the command (NOSCRIPT)',
    ],
  ])('%s', (error, words) => {
    expect(describeBackendError(error)).toBe(words);
  });
});
