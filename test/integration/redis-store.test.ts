import type Redis from 'ioredis';
import pino from 'pino';
import { redisBucketKey } from '../../src/ratelimit/bucket-script';
import { RedisBucketStore } from '../../src/ratelimit/redis-store';
import { RedisConnections } from '../../src/redis/connections';
import { engineFor } from '../helpers/engine';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { startRedis, type RedisProcess } from '../helpers/redis';
import { waitFor } from '../helpers/wait';
import { describeBucketStoreContract } from '../contracts/bucket-store.contract';
import { CHECKOUT_WEB, envoyCheckRequest, ORDERS } from '../helpers/requests';

const silent = pino({ level: 'silent' });

async function scriptCalls(client: Redis): Promise<number> {
  const info = await client.info('commandstats');
  let total = 0;
  for (const m of info.matchAll(/cmdstat_(eval|evalsha):calls=(\d+)/g)) total += Number(m[2]);
  return total;
}

describe('Redis bucket store against a real redis-server', () => {
  let redis: RedisProcess;
  let admin: Redis;
  const connections: RedisConnections[] = [];
  const store = async (): Promise<RedisBucketStore> => {
    const c = new RedisConnections({ url: redis.url, timeoutMs: 500 }, silent);
    connections.push(c);
    expect(await c.waitUntilConnected(5000)).toBe(true);
    return new RedisBucketStore({ connections: c, log: silent });
  };

  beforeAll(async () => {
    redis = await startRedis();
    admin = redis.client();
  });
  afterAll(async () => {
    await Promise.all(connections.map((c) => c.close()));
    admin.disconnect();
    await redis.stop();
  });

  describeBucketStoreContract('redis', () => store());

  test('same semantics as the in-process bucket: capacity, then 429 data, and shared by replicas', async () => {
    const a = await store();
    const b = await store(); // a second replica
    const spec = { capacity: 4, refillPerSecond: 0.5 };
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await (i % 2 ? b : a).take('p|r|caller-1', spec, 1));
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, false, false]);
    expect(results.map((r) => r.remaining)).toEqual([3, 2, 1, 0, 0, 0]);
    expect(results[4]).toMatchObject({ limit: 4, retryAfterSeconds: 2 });
    expect(results[4]!.resetSeconds).toBeGreaterThanOrEqual(7);
    expect((await a.take('p|r|caller-2', spec, 1)).remaining).toBe(3);
  });

  test('keys are hash-tagged and expire when the bucket would be full again', async () => {
    const s = await store();
    await s.take('p|r|spiffe://td/x', { capacity: 10, refillPerSecond: 5 }, 4);
    const key = redisBucketKey('p|r|spiffe://td/x');
    expect(key).toBe('gatehouse:{p|r|spiffe://td/x}');
    const ttl = await admin.pttl(key);
    expect(ttl).toBeGreaterThan(600);
    expect(ttl).toBeLessThanOrEqual(800); // 4 tokens at 5/s
    await waitFor(async () => (await admin.exists(key)) === 0, 'the full bucket to expire', 5000);
  });

  test('one script call per check, by SHA after the first, and recovery from SCRIPT FLUSH (NOSCRIPT)', async () => {
    const s = await store();
    const spec = { capacity: 1000, refillPerSecond: 1 };
    await s.take('p|r|warm', spec, 1);
    await admin.config('RESETSTAT');
    for (let i = 0; i < 20; i++) await s.take(`p|r|n${i}`, spec, 1);
    const info = await admin.info('commandstats');
    expect(info).toMatch(/cmdstat_evalsha:calls=20,/);
    expect(info).not.toMatch(/cmdstat_eval:/);
    await admin.script('FLUSH');
    expect((await s.take('p|r|after-flush', spec, 1)).allowed).toBe(true);
    expect((await s.take('p|r|after-flush', spec, 1)).remaining).toBe(998);
  });

  test('routes without a limit never touch Redis; a limited check costs one script call', async () => {
    const s = await store();
    const { engine } = await engineFor(EXAMPLE_POLICIES, { store: s });
    await engine.decide(envoyCheckRequest({ principal: CHECKOUT_WEB })); // warms the script on the connection
    const before = await scriptCalls(admin);
    for (let i = 0; i < 10; i++) {
      expect(
        (
          await engine.decide(
            envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET', path: `/v1/orders/${i}` }),
          )
        ).allowed,
      ).toBe(true);
    }
    expect(await scriptCalls(admin)).toBe(before);
    const limited = await engine.decide(
      envoyCheckRequest({ principal: ORDERS, host: 'payments', path: '/v1/charges' }),
    );
    expect(limited.limit).toMatchObject({ limit: 5, remaining: 4 });
    expect(await scriptCalls(admin)).toBe(before + 1);
  });
});
