import type Redis from 'ioredis';
import { RedisConnections } from '../../src/redis/connections';
import { freePort, startRedis, type RedisProcess } from '../helpers/redis';
import { memoryLogger } from '../helpers/server';
import { waitFor } from '../helpers/wait';

const clientCount = async (admin: Redis): Promise<number> =>
  String(await admin.call('CLIENT', 'LIST'))
    .trim()
    .split('\n').length;

describe('RedisConnections against a real redis-server', () => {
  let redis: RedisProcess;
  let admin: Redis;

  beforeAll(async () => {
    redis = await startRedis();
    admin = redis.client();
  });
  afterAll(async () => {
    admin.disconnect();
    await redis.stop();
  });

  test('close() closes every connection it opened: checks, state and the subscriber', async () => {
    const alone = await clientCount(admin);
    const { log } = memoryLogger();
    const connections = new RedisConnections({ url: redis.url, timeoutMs: 500 }, log);
    expect(await connections.waitUntilConnected(5000)).toBe(true);
    expect(connections.state).toBe(connections.state);
    await connections.state.ping();
    await connections.subscriber.subscribe('gatehouse-test');
    expect(await clientCount(admin)).toBe(alone + 3);

    await connections.close();
    await waitFor(async () => (await clientCount(admin)) === alone, 'every connection closed');
    expect(connections.connected).toBe(false);
  });

  test('an unreachable Redis: checks fail at once instead of queueing, and no log line holds the password', async () => {
    const port = await freePort(); // nothing listens there
    const logs = memoryLogger();
    const connections = new RedisConnections(
      { url: `redis://gatehouse:s3cret-pass@127.0.0.1:${port}`, timeoutMs: 500 },
      logs.log,
    );
    try {
      expect(await connections.waitUntilConnected(300)).toBe(false);
      await expect(connections.buckets.ping()).rejects.toThrow(/offline queue|writeable/i);
      await waitFor(() => logs.lines().length > 0, 'the connection error logged');
      const text = JSON.stringify(logs.lines());
      expect(text).toContain(`127.0.0.1:${port}`);
      expect(text).not.toContain('s3cret-pass');
      expect(logs.lines()).toEqual([
        expect.objectContaining({ msg: 'redis connection error; reconnecting' }),
      ]);
    } finally {
      await connections.close();
    }
  });
});
