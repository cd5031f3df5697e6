import * as net from 'node:net';
import { freePort, PortInUseError, startOnFreePort } from '../helpers/ports';
import { startRedis, type RedisProcess } from '../helpers/redis';

/** A loopback listener holding a port, as another process would between choosing and binding. */
async function occupy(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Hands out `first` once, then whatever freePort finds. */
function firstThenFree(first: number): { choose: () => Promise<number>; chosen: number[] } {
  const chosen: number[] = [];
  return {
    chosen,
    choose: async () => {
      const port = chosen.length === 0 ? first : await freePort();
      chosen.push(port);
      return port;
    },
  };
}

describe('test harness: ports held until the child binds them', () => {
  const started: RedisProcess[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((r) => r.stop()));
  });

  test('startRedis whose first port was taken meanwhile starts on another and answers there', async () => {
    const taken = await occupy();
    try {
      const ports = firstThenFree(taken.port);
      const redis = await startRedis([], { choosePort: ports.choose });
      started.push(redis);
      expect(ports.chosen[0]).toBe(taken.port);
      expect(ports.chosen).toHaveLength(2);
      expect(redis.port).toBe(ports.chosen[1]);
      const client = redis.client();
      try {
        expect(await client.ping()).toBe('PONG');
      } finally {
        client.disconnect();
      }
    } finally {
      await taken.close();
    }
  });

  test('a port held by another redis-server is not mistaken for the new one', async () => {
    const other = await startRedis();
    started.push(other);
    const ports = firstThenFree(other.port);
    const redis = await startRedis([], { choosePort: ports.choose });
    started.push(redis);
    expect(redis.port).not.toBe(other.port);
    expect(redis.pid).not.toBe(other.pid);
    const client = redis.client();
    try {
      // The new server's own process answers on its port.
      const info = await client.info('server');
      expect(info).toContain(`process_id:${redis.pid}`);
    } finally {
      client.disconnect();
    }
  });

  test('collisions are retried a bounded number of times, then reported', async () => {
    const taken = await occupy();
    try {
      let calls = 0;
      await expect(
        startOnFreePort(
          async (port) => {
            calls++;
            throw new PortInUseError(port, 'held by the test');
          },
          { attempts: 3, choosePort: async () => taken.port },
        ),
      ).rejects.toThrow(/no free port after 3 attempts/);
      expect(calls).toBe(3);
    } finally {
      await taken.close();
    }
  });

  test('any other start failure is not retried', async () => {
    let calls = 0;
    await expect(
      startOnFreePort(async () => {
        calls++;
        throw new Error('bad config');
      }),
    ).rejects.toThrow('bad config');
    expect(calls).toBe(1);
  });
});
