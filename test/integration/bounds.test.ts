import * as grpc from '@grpc/grpc-js';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnServe } from '../helpers/cli';
import { checkClient, type CheckClient } from '../helpers/grpc-client';
import {
  EXAMPLE_POLICIES,
  policyDir,
  servicePolicy,
  EXAMPLE_POLICY_ARGS,
} from '../helpers/policies';
import { startRedis, type RedisProcess } from '../helpers/redis';
import { CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { startTestServer, type TestServer } from '../helpers/server';
import { waitFor } from '../helpers/wait';
import type { GatehouseOptions } from '../../src/app';
import { DEFAULT_TRANSPORT_LIMITS, type TransportLimits } from '../../src/server/limits';

const LIMITED_HOST = 'limited';
const limitedPolicy = (per: string) =>
  servicePolicy(
    'limited',
    [LIMITED_HOST],
    `    - name: r
      allow: ['${CHECKOUT_WEB}']
      rateLimit: { capacity: 3, refillPerSecond: 0.001, per: '${per}' }`,
  );

async function metric(server: TestServer, line: string): Promise<number> {
  const text = await server.app.metrics.registry.metrics();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? NaN : Number(found.slice(line.length + 1));
}

/** Resolves when the peer closes the socket; rejects after `ms`. */
function closedWithin(socket: net.Socket, ms: number): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

function rawConnection(port: number, send?: Buffer): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      if (send) socket.write(send);
      resolve(socket);
    });
    socket.on('error', () => undefined);
    socket.once('error', reject);
    socket.resume();
  });
}

const PREFACE_AND_SETTINGS = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
]);

describe('bucket memory budget on a real server', () => {
  let server: TestServer;
  let client: CheckClient;
  beforeAll(async () => {
    server = await startTestServer({
      policiesDir: policyDir({ 'p.yaml': limitedPolicy('header:x-tenant') }),
      buckets: { maxBuckets: 50, maxIdleMs: 3_600_000 },
    });
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client.close();
    await server.stop();
  });

  test('a flood of distinct long header keys holds at most --max-buckets buckets, and never over-admits a key', async () => {
    const check = (tenant: string) =>
      client.check(
        envoyCheckRequest({
          principal: CHECKOUT_WEB,
          host: LIMITED_HOST,
          method: 'GET',
          path: '/',
          headers: { 'x-tenant': tenant },
        }),
      );
    for (let batch = 0; batch < 10; batch++) {
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => check(`${'t'.repeat(4000)}-${batch}-${i}`)),
      );
      expect(results.every((r) => (r.status?.code ?? 0) === 0)).toBe(true);
      expect(await metric(server, 'gatehouse_buckets')).toBeLessThanOrEqual(50);
    }
    expect(await metric(server, 'gatehouse_buckets')).toBe(50);
    expect(await metric(server, 'gatehouse_buckets_evicted_early_total')).toBe(350);
    // A key in use is the most recent: the bound never resets it under its caller.
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push((await check('steady')).status?.code ?? 0);
    expect(codes).toEqual([0, 0, 0, 8, 8]);
    expect(await metric(server, 'gatehouse_state_entries{table="quarantine"}')).toBe(0);
  });
});

describe('transport limits on a real server', () => {
  let server: TestServer;
  const limits: TransportLimits = {
    ...DEFAULT_TRANSPORT_LIMITS,
    maxReceiveBytes: 64 * 1024,
    maxConcurrentStreams: 5,
    maxConnections: 4,
    prefaceTimeoutMs: 300,
    idleTimeoutMs: 1000,
  };
  beforeAll(async () => {
    server = await startTestServer({ policiesDir: EXAMPLE_POLICIES, transport: limits });
  });
  afterAll(async () => {
    await server.stop();
  });

  test('a connection that never sends the HTTP/2 preface is closed after the preface timeout', async () => {
    const silent = await rawConnection(server.port);
    const tookMs = await closedWithin(silent, 5000);
    expect(tookMs).toBeGreaterThanOrEqual(250);
    expect(
      await metric(server, 'gatehouse_connections_refused_total{reason="preface_timeout"}'),
    ).toBe(1);
  });

  test('a connection that speaks something else is closed at once', async () => {
    const http1 = await rawConnection(
      server.port,
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    );
    expect(await closedWithin(http1, 250)).toBeLessThan(250); // by HTTP/2 itself, well before the preface timeout
  });

  test('connections past the cap are closed on accept; those within it keep working', async () => {
    const held = await Promise.all(
      Array.from({ length: limits.maxConnections }, () =>
        rawConnection(server.port, PREFACE_AND_SETTINGS),
      ),
    );
    await waitFor(
      async () => (await metric(server, 'gatehouse_grpc_connections')) === limits.maxConnections,
      'connections counted',
    );
    const extra = await rawConnection(server.port, PREFACE_AND_SETTINGS);
    await closedWithin(extra, 2000);
    expect(
      await metric(server, 'gatehouse_connections_refused_total{reason="connection_limit"}'),
    ).toBe(1);
    for (const s of held) s.destroy();
    await waitFor(
      async () => (await metric(server, 'gatehouse_grpc_connections')) === 0,
      'connections released',
    );
    const client = checkClient(server.port, { ownConnection: true });
    expect(
      (await client.check(envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' }))).status
        ?.code ?? 0,
    ).toBe(0);
    client.close();
  });

  test('the stream limit is advertised in SETTINGS, and an idle connection is closed after the idle timeout', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on('error', () => undefined);
    const settings = await new Promise<http2.Settings>((resolve) =>
      session.once('remoteSettings', resolve),
    );
    expect(settings.maxConcurrentStreams).toBe(5);
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('idle connection not closed')), 5000);
      session.once('goaway', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    session.destroy();
  });

  test('a message over the receive limit is refused before it is decoded', async () => {
    const client = checkClient(server.port, { ownConnection: true });
    const big = envoyCheckRequest({
      principal: CHECKOUT_WEB,
      method: 'GET',
      headers: { 'x-pad': 'p'.repeat(80 * 1024) },
    });
    await expect(client.check(big)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    const small = envoyCheckRequest({
      principal: CHECKOUT_WEB,
      method: 'GET',
      headers: { 'x-pad': 'p'.repeat(32 * 1024) },
    });
    expect((await client.check(small)).status?.code ?? 0).toBe(0);
    client.close();
  });
});

describe('HTTP mode shares the connection bounds', () => {
  test('a silent connection is closed near the header timeout; connections past the cap are refused', async () => {
    const server = await startTestServer({
      policiesDir: EXAMPLE_POLICIES,
      http: { port: 0, dialect: 'envoy' },
      transport: { ...DEFAULT_TRANSPORT_LIMITS, maxConnections: 2, prefaceTimeoutMs: 500 },
    });
    try {
      const port = server.app.http!.port;
      const silent = await rawConnection(port);
      const tookMs = await closedWithin(silent, 5000);
      expect(tookMs).toBeGreaterThanOrEqual(450);
      const held = await Promise.all([rawConnection(port), rawConnection(port)]);
      const extra = await rawConnection(port);
      expect(await closedWithin(extra, 400)).toBeLessThan(400); // well before the header timeout: the cap
      for (const s of held) s.destroy();
    } finally {
      await server.stop();
    }
  });
});

/**
 * A server whose limited checks wait on a Redis the test can freeze, with at most four checks
 * in flight; started and stopped around the enclosing describe.
 */
function serverWithFourInFlight(extra: Partial<GatehouseOptions>): {
  redis: RedisProcess;
  server: TestServer;
} {
  const held = {} as { redis: RedisProcess; server: TestServer };
  beforeAll(async () => {
    held.redis = await startRedis();
    held.server = await startTestServer({
      policiesDir: policyDir({ 'p.yaml': limitedPolicy('caller') }),
      redis: { url: held.redis.url, timeoutMs: 400 },
      shedding: { maxInFlight: 4, maxEventLoopLagMs: 0 },
      ...extra,
    });
  });
  afterAll(async () => {
    held.redis.thaw();
    await held.server.stop();
    await held.redis.stop();
  });
  return held;
}

describe('overload: in-flight checks are bounded and the rest refused fast', () => {
  // Its own server: the breaker the frozen Redis opens would let later checks skip the wait.
  const held = serverWithFourInFlight({});

  test('with Redis frozen, four checks wait for it and the other sixteen are refused with RESOURCE_EXHAUSTED at once', async () => {
    const client = checkClient(held.server.port, { ownConnection: true });
    const request = envoyCheckRequest({
      principal: CHECKOUT_WEB,
      host: LIMITED_HOST,
      method: 'GET',
      path: '/',
    });
    await client.check(request); // connected, scripts loaded
    const auditedBefore = (await held.server.auditRecords()).length;
    held.redis.freeze();
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () =>
        client.check(request, 3000).then(
          () => ({ answered: true, ms: Date.now() - started }),
          (err: grpc.ServiceError) => ({
            answered: false,
            code: err.code,
            ms: Date.now() - started,
          }),
        ),
      ),
    );
    held.redis.thaw();
    const answered = outcomes.filter((o) => o.answered);
    const refused = outcomes.filter((o) => !o.answered);
    expect(answered).toHaveLength(4);
    expect(refused.every((o) => 'code' in o && o.code === grpc.status.RESOURCE_EXHAUSTED)).toBe(
      true,
    );
    expect(Math.max(...refused.map((o) => o.ms))).toBeLessThan(
      Math.min(...answered.map((o) => o.ms)),
    );
    expect(await metric(held.server, 'gatehouse_checks_shed_total{reason="in_flight"}')).toBe(16);
    // Refused checks were never decided: only the four are audited.
    expect((await held.server.auditRecords()).length - auditedBefore).toBe(4);
    client.close();
  });
});

/** One HTTP-mode check (Envoy dialect, caller in XFCC); resolves with its status and when it came. */
function httpCheck(port: number, started: number): Promise<{ status: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        headers: { host: LIMITED_HOST, 'x-forwarded-client-cert': `URI=${CHECKOUT_WEB}` },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, ms: Date.now() - started }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('overload in the HTTP mode: the same in-flight bound, refused as 503', () => {
  const held = serverWithFourInFlight({
    trustXfcc: true,
    http: { port: 0, dialect: 'envoy' },
  });

  test('with Redis frozen, four HTTP checks wait for it and the other sixteen are answered 503 at once, never decided', async () => {
    const port = held.server.app.http!.port;
    expect((await httpCheck(port, Date.now())).status).toBe(200); // connected, scripts loaded
    const auditedBefore = (await held.server.auditRecords()).length;
    held.redis.freeze();
    const started = Date.now();
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => httpCheck(port, started)));
    held.redis.thaw();
    const refused = outcomes.filter((o) => o.status === 503);
    const decided = outcomes.filter((o) => o.status !== 503);
    expect(refused).toHaveLength(16);
    expect(decided).toHaveLength(4);
    expect(Math.max(...refused.map((o) => o.ms))).toBeLessThan(
      Math.min(...decided.map((o) => o.ms)),
    );
    expect(await metric(held.server, 'gatehouse_checks_shed_total{reason="in_flight"}')).toBe(16);
    expect((await held.server.auditRecords()).length - auditedBefore).toBe(4);
  });
});

describe('shutdown', () => {
  test('idle connections (with and without a preface) do not hold SIGTERM until --drain-timeout', async () => {
    const serve = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--no-watch',
      '--drain-timeout',
      '20000',
      '--audit-log',
      path.join(mkdtempSync(path.join(tmpdir(), 'gh-bounds-')), 'a.log'),
    ]);
    const client = checkClient(serve.port);
    await client.check(envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' }));
    const silent = await rawConnection(serve.port);
    const talked = await rawConnection(serve.port, PREFACE_AND_SETTINGS);
    const started = Date.now();
    serve.child.kill('SIGTERM');
    expect(await serve.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    client.close();
    silent.destroy();
    talked.destroy();
  });
});
