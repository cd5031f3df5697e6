import pino from 'pino';
import { redisBucketKey } from '../../src/ratelimit/bucket-script';
import { RedisBucketStore } from '../../src/ratelimit/redis-store';
import { RedisConnections } from '../../src/redis/connections';
import { spawnServe } from '../helpers/cli';
import { checkClient, headerMap } from '../helpers/grpc-client';
import { EXAMPLE_POLICY_ARGS } from '../helpers/policies';
import { startRedisCluster, type RedisCluster } from '../helpers/redis';
import { envoyCheckRequest, ORDERS } from '../helpers/requests';

const silent = pino({ level: 'silent' });
const spec = { capacity: 3, refillPerSecond: 0.01 };

describe('Redis Cluster: three masters with a replica each, on loopback', () => {
  let cluster: RedisCluster;
  let connections: RedisConnections;
  let store: RedisBucketStore;

  beforeAll(async () => {
    cluster = await startRedisCluster(3, 1);
    connections = new RedisConnections({ clusterUrls: cluster.urls, timeoutMs: 1000 }, silent);
    store = new RedisBucketStore({ connections, log: silent });
    expect(await connections.waitUntilConnected(10_000)).toBe(true);
  }, 60_000);

  afterAll(async () => {
    await connections.close();
    await cluster.stop();
  });

  const masterPorts = (): number[] =>
    cluster.nodes
      .filter((n) => cluster.cli(n.port, 'role').startsWith('master'))
      .map((n) => n.port);
  const nodeId = (port: number): string => cluster.cli(port, 'cluster', 'myid');
  const ownerOf = (key: string): number => {
    const slot = Number(cluster.cli(cluster.nodes[0]!.port, 'cluster', 'keyslot', key));
    for (const port of masterPorts()) {
      if (cluster.cli(port, 'cluster', 'countkeysinslot', String(slot)) !== '0') return port;
    }
    throw new Error(`no master holds ${key}`);
  };

  test('buckets work and keys spread over every master', async () => {
    const results = [];
    for (let i = 0; i < 5; i++)
      results.push((await store.take('p|r|spiffe://td/one', spec, 1)).allowed);
    expect(results).toEqual([true, true, true, false, false]);
    for (let i = 0; i < 60; i++) await store.take(`p|r|spiffe://td/caller-${i}`, spec, 1);
    const sizes = masterPorts().map((port) => Number(cluster.cli(port, 'dbsize')));
    expect(sizes).toHaveLength(3);
    for (const size of sizes) expect(size).toBeGreaterThan(5);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(61);
  });

  test('a slot moved to another master (MOVED) keeps its bucket', async () => {
    const bucket = 'p|r|spiffe://td/moving';
    const key = redisBucketKey(bucket);
    expect(await store.take(bucket, spec, 1)).toMatchObject({ allowed: true, remaining: 2 });
    const source = ownerOf(key);
    const target = masterPorts().find((p) => p !== source)!;
    const slot = cluster.cli(source, 'cluster', 'keyslot', key);
    cluster.cli(target, 'cluster', 'setslot', slot, 'importing', nodeId(source));
    cluster.cli(source, 'cluster', 'setslot', slot, 'migrating', nodeId(target));
    expect(
      cluster.cli(source, 'migrate', '127.0.0.1', String(target), '', '0', '5000', 'keys', key),
    ).toBe('OK');
    for (const port of masterPorts())
      cluster.cli(port, 'cluster', 'setslot', slot, 'node', nodeId(target));
    expect(ownerOf(key)).toBe(target);

    expect(await store.take(bucket, spec, 1)).toMatchObject({ allowed: true, remaining: 1 });
    expect(await store.take(bucket, spec, 1)).toMatchObject({ allowed: true, remaining: 0 });
    expect((await store.take(bucket, spec, 1)).allowed).toBe(false);
  });

  test('a failover to the replica keeps buckets working', async () => {
    const bucket = 'p|r|spiffe://td/failover';
    const key = redisBucketKey(bucket);
    expect(await store.take(bucket, spec, 1)).toMatchObject({ allowed: true, remaining: 2 });
    const oldMaster = ownerOf(key);
    cluster.cli(oldMaster, 'wait', '1', '2000'); // the replica has the bucket
    const replica = cluster.nodes.find(
      (n) =>
        cluster.cli(n.port, 'role').startsWith('slave') &&
        cluster.cli(n.port, 'role').includes(String(oldMaster)),
    )!;
    expect(replica).toBeDefined();
    expect(cluster.cli(replica.port, 'cluster', 'failover')).toBe('OK');
    for (let i = 0; i < 100 && !cluster.cli(replica.port, 'role').startsWith('master'); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(cluster.cli(replica.port, 'role').startsWith('master')).toBe(true);

    let result;
    for (let i = 0; i < 20; i++) {
      try {
        result = await store.take(bucket, spec, 1);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100)); // the breaker may be half-open for a moment
      }
    }
    expect(result).toMatchObject({ allowed: true, remaining: 1 });
    expect(ownerOf(key)).toBe(replica.port);
  });

  test('gatehouse serve --redis-cluster shares buckets through the cluster', async () => {
    const server = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--redis-cluster',
      cluster.urls.join(','),
      '--audit-log',
      '/dev/null',
    ]);
    const client = checkClient(server.port);
    try {
      expect(server.stderr()).toContain('"limiter":"redis-cluster"');
      const req = envoyCheckRequest({ principal: ORDERS, host: 'payments', path: '/v1/charges' });
      const remaining = [];
      for (let i = 0; i < 6; i++) {
        const r = await client.check(req);
        remaining.push(
          headerMap(r.okResponse?.responseHeadersToAdd ?? r.deniedResponse?.headers)[
            'ratelimit-remaining'
          ],
        );
      }
      expect(remaining).toEqual(['4', '3', '2', '1', '0', '0']);
      expect(
        Number(
          cluster.cli(
            ownerOf(redisBucketKey(`payments|charge|${ORDERS}`)),
            'exists',
            redisBucketKey(`payments|charge|${ORDERS}`),
          ),
        ),
      ).toBe(1);
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    }
  });
});
