import { MemoryBucketStore } from '../../src/ratelimit/memory-store';
import { takeTokens } from '../../src/ratelimit/token-bucket';
import { describeBucketStoreContract } from '../contracts/bucket-store.contract';

const spec = { capacity: 5, refillPerSecond: 2 };

describe('token bucket semantics', () => {
  test('starts full, costs one per request, denies when empty without consuming', () => {
    const state = { tokens: 5, updatedAtMs: 0 };
    const results = Array.from({ length: 7 }, () => takeTokens(state, spec, 1, 0));
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, true, false, false]);
    expect(results.map((r) => r.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0]);
    expect(state.tokens).toBe(0);
    // 0 tokens, 2/s: 1 token in 0.5s → retry-after rounds up to 1; full in 2.5s → reset 3.
    expect(results[5]).toMatchObject({ retryAfterSeconds: 1, resetSeconds: 3, limit: 5 });
  });

  test('refills continuously and caps at capacity', () => {
    const state = { tokens: 0, updatedAtMs: 0 };
    expect(takeTokens(state, spec, 1, 499).allowed).toBe(false); // 0.998 tokens
    expect(takeTokens(state, spec, 1, 500).allowed).toBe(true); // 1 token
    const later = takeTokens(state, spec, 1, 60_000);
    expect(later.remaining).toBe(4); // capped at 5, minus 1
  });

  test('cost above one and retry-after for it', () => {
    const state = { tokens: 1, updatedAtMs: 0 };
    const r = takeTokens(state, { capacity: 10, refillPerSecond: 1 }, 4, 0);
    expect(r.allowed).toBe(false);
    expect(r.retryAfterSeconds).toBe(3);
    expect(state.tokens).toBe(1);
  });

  test('a clock that goes backwards never adds tokens', () => {
    const state = { tokens: 0, updatedAtMs: 10_000 };
    expect(takeTokens(state, spec, 1, 5_000).allowed).toBe(false);
  });

  test('admitted requests never exceed capacity + rate × t', () => {
    const state = { tokens: 5, updatedAtMs: 0 };
    let admitted = 0;
    for (let t = 0; t <= 10_000; t += 7) if (takeTokens(state, spec, 1, t).allowed) admitted++;
    expect(admitted).toBeLessThanOrEqual(5 + 2 * 10);
    expect(admitted).toBeGreaterThanOrEqual(5 + 2 * 10 - 1);
  });
});

describeBucketStoreContract('memory', async () => new MemoryBucketStore());

describe('in-process store', () => {
  test('refills by its injected clock', () => {
    let now = 0;
    const store = new MemoryBucketStore({ now: () => now });
    for (let i = 0; i < 5; i++) expect(store.take('a', spec, 1).allowed).toBe(true);
    expect(store.take('a', spec, 1).allowed).toBe(false);
    now = 1000;
    expect(store.take('a', spec, 1).remaining).toBe(1);
    void store.close();
  });

  test('sweeps buckets that have refilled and is lossless doing so', () => {
    let now = 0;
    const store = new MemoryBucketStore({ now: () => now });
    for (let i = 0; i < 1000; i++) store.take(`caller-${i}`, spec, 1);
    store.take('hot', spec, 5);
    expect(store.size).toBe(1001);
    now = 600; // 1.2 tokens back: the 1000 single-use buckets are full again, 'hot' is not
    expect(store.sweep()).toBe(1000);
    expect(store.size).toBe(1);
    expect(store.take('hot', spec, 1).remaining).toBe(0);
    now = 10_000;
    expect(store.sweep()).toBe(1);
    void store.close();
  });

  test('never holds more than maxBuckets', () => {
    const store = new MemoryBucketStore({ maxBuckets: 100, now: () => 0 });
    for (let i = 0; i < 10_000; i++) store.take(`k${i}`, spec, 1);
    expect(store.size).toBe(100);
    void store.close();
  });
});
