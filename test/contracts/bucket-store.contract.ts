import type { BucketStore } from '../../src/ratelimit/types';

/** A fresh store on the real clock; `close` releases what the factory opened beside it. */
export type BucketStoreFactory = () => Promise<BucketStore>;

/**
 * The token-bucket answers every BucketStore gives, in process or in Redis. Keys carry a
 * per-test prefix so stores sharing one Redis never see each other's buckets.
 */
export function describeBucketStoreContract(name: string, factory: BucketStoreFactory): void {
  describe(`BucketStore contract: ${name}`, () => {
    const open: BucketStore[] = [];
    let seq = 0;
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });
    async function make() {
      const store = await factory();
      open.push(store);
      const prefix = `contract${++seq}|r|`;
      return { store, key: (caller: string) => `${prefix}${caller}` };
    }

    test('starts full, one token per take, then denies with 429 data; buckets are kept apart by key', async () => {
      const { store, key } = await make();
      const spec = { capacity: 4, refillPerSecond: 0.5 };
      const results = [];
      for (let i = 0; i < 6; i++) results.push(await store.take(key('caller-1'), spec, 1));
      expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, false, false]);
      expect(results.map((r) => r.remaining)).toEqual([3, 2, 1, 0, 0, 0]);
      // 0 tokens at 0.5/s: one back in 2 s; full in 8 s.
      expect(results[4]).toMatchObject({ limit: 4, retryAfterSeconds: 2 });
      expect(results[4]!.resetSeconds).toBeGreaterThanOrEqual(7);
      expect((await store.take(key('caller-2'), spec, 1)).remaining).toBe(3);
    });

    test('cost, and a denied take consumes nothing', async () => {
      const { store, key } = await make();
      const spec = { capacity: 10, refillPerSecond: 0.001 };
      expect(await store.take(key('cost'), spec, 7)).toMatchObject({ allowed: true, remaining: 3 });
      expect(await store.take(key('cost'), spec, 4)).toMatchObject({
        allowed: false,
        remaining: 3,
      });
      expect(await store.take(key('cost'), spec, 3)).toMatchObject({ allowed: true, remaining: 0 });
    });

    test('an empty bucket refills with time, never past its capacity', async () => {
      const { store, key } = await make();
      const spec = { capacity: 2, refillPerSecond: 4 };
      expect(await store.take(key('refill'), spec, 2)).toMatchObject({
        allowed: true,
        remaining: 0,
      });
      // Time-based on purpose: 600 ms at 4/s is 2.4 tokens' worth, capped at 2 however long it takes.
      await new Promise((r) => setTimeout(r, 600));
      expect(await store.take(key('refill'), spec, 1)).toMatchObject({
        allowed: true,
        remaining: 1,
      });
    });
  });
}
