import { checkClient, headerMap, type CheckClient } from '../helpers/grpc-client';
import { policyDir, servicePolicy } from '../helpers/policies';
import { freePort } from '../helpers/ports';
import { startRedis, type RedisProcess } from '../helpers/redis';
import { CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { memoryLogger, startTestServer, type TestServer } from '../helpers/server';
import { waitFor } from '../helpers/wait';

const TIMEOUT_MS = 50;
/**
 * What "answered within the budget" allows on a shared, noisy 2-core machine. A frozen Redis
 * without the budget would hold every check until the client gives up (5 s), so this still tells.
 */
const BUDGET_SLACK_MS = 450;

const POLICIES = policyDir({
  'p.yaml': servicePolicy(
    'limits',
    ['limits'],
    `    - name: fail-open
      paths: [/open]
      allow: [spiffe://shop.example/**]
      rateLimit: { capacity: 1000, refillPerSecond: 1 }
    - name: fail-closed
      paths: [/closed]
      allow: [spiffe://shop.example/**]
      rateLimit: { capacity: 1000, refillPerSecond: 1, onBackendError: deny }
    - name: unlimited
      paths: [/free]
      allow: [spiffe://shop.example/ns/checkout/**]`,
  ),
});

type Outcome = { status: number; ms: number; remaining?: string };

async function timedCheck(
  client: CheckClient,
  path: string,
  principal = CHECKOUT_WEB,
): Promise<Outcome> {
  const start = performance.now();
  const r = await client.check(envoyCheckRequest({ principal, host: 'limits', path }), 2000);
  const ms = performance.now() - start;
  const status = r.deniedResponse?.status.code ?? 200;
  return {
    status,
    ms,
    remaining: headerMap(r.okResponse?.responseHeadersToAdd)['ratelimit-remaining'],
  };
}

function unhandledRejections(): { count: () => number; dispose: () => void } {
  let count = 0;
  const onRejection = (): void => void count++;
  process.on('unhandledRejection', onRejection);
  return { count: () => count, dispose: () => process.off('unhandledRejection', onRejection) };
}

/** The value of an unlabelled metric in the server's Prometheus text. */
async function metric(server: TestServer, name: string): Promise<number> {
  const text = await server.app.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`metric ${name} not exposed`);
  return Number(line.slice(name.length + 1));
}

describe('Redis faults: every check answers within budget, onBackendError is honoured', () => {
  let server: TestServer | undefined;
  let client: CheckClient | undefined;
  let redis: RedisProcess | undefined;
  const rejections = unhandledRejections();

  afterEach(async () => {
    client?.close();
    await server?.stop();
    await redis?.stop();
    server = client = redis = undefined;
  });
  afterAll(() => {
    expect(rejections.count()).toBe(0);
    rejections.dispose();
  });

  test('Redis unreachable at start: the server starts; limits follow onBackendError; identity and permissions apply', async () => {
    const port = await freePort(); // nothing listens there
    const logs = memoryLogger();
    server = await startTestServer({
      policiesDir: POLICIES,
      redis: { url: `redis://127.0.0.1:${port}`, timeoutMs: TIMEOUT_MS },
      log: logs.log,
    });
    client = checkClient(server.port);
    for (let i = 0; i < 20; i++) {
      const open = await timedCheck(client, '/open');
      const closed = await timedCheck(client, '/closed');
      expect(open.status).toBe(200);
      expect(closed.status).toBe(429);
      expect(Math.max(open.ms, closed.ms)).toBeLessThan(TIMEOUT_MS + BUDGET_SLACK_MS);
    }
    expect((await timedCheck(client, '/free')).status).toBe(200);
    expect((await timedCheck(client, '/open', 'spiffe://evil.example/x')).status).toBe(401);
    expect((await timedCheck(client, '/free', 'spiffe://shop.example/ns/other/sa/x')).status).toBe(
      403,
    );
    const records = await server.auditRecords();
    expect(records.find((r) => r['rule'] === 'fail-closed')).toMatchObject({
      status: 429,
      reason_code: 'limit_backend_error',
    });
    expect(records.find((r) => r['rule'] === 'fail-open')).toMatchObject({
      status: 200,
      limit_backend_error: expect.any(String),
    });
    // Connection trouble is logged once, not per check.
    const redisWarnings = logs
      .lines()
      .filter((l) => l['component'] === 'redis' && (l['level'] as number) >= 40);
    expect(redisWarnings.length).toBeGreaterThanOrEqual(1);
    expect(redisWarnings.length).toBeLessThanOrEqual(3);
  });

  test('Redis stopped mid-run, then back: fast fallback, then the store reconnects by itself', async () => {
    redis = await startRedis();
    server = await startTestServer({
      policiesDir: POLICIES,
      redis: { url: redis.url, timeoutMs: TIMEOUT_MS },
    });
    client = checkClient(server.port);
    expect(await timedCheck(client, '/open')).toMatchObject({ status: 200, remaining: '999' });
    // Refill is 1/s: the second check sees the first one's token gone (unless a whole second passed).
    expect(await timedCheck(client, '/open')).toMatchObject({ status: 200, remaining: '998' });

    await redis.stop();
    for (let i = 0; i < 30; i++) {
      const [open, closed] = await Promise.all([
        timedCheck(client, '/open'),
        timedCheck(client, '/closed'),
      ]);
      expect(open).toMatchObject({ status: 200, remaining: undefined });
      expect(closed.status).toBe(429);
      expect(Math.max(open.ms, closed.ms)).toBeLessThan(TIMEOUT_MS + BUDGET_SLACK_MS);
    }

    await redis.restart(); // same port, empty: the bucket starts full again
    let back: Outcome | undefined;
    for (let i = 0; i < 100; i++) {
      back = await timedCheck(client, '/closed');
      if (back.status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(back).toMatchObject({ status: 200, remaining: '999' });
    const admin = redis.client();
    expect(await admin.keys('gatehouse:*')).toEqual([
      'gatehouse:{limits|fail-closed|spiffe://shop.example/ns/checkout/sa/web}',
    ]);
    admin.disconnect();
  });

  test('Redis frozen (SIGSTOP) with checks in flight: budget kept, breaker stops paying the timeout, recovery after SIGCONT', async () => {
    redis = await startRedis();
    const logs = memoryLogger();
    server = await startTestServer({
      policiesDir: POLICIES,
      redis: { url: redis.url, timeoutMs: TIMEOUT_MS },
      log: logs.log,
    });
    client = checkClient(server.port);
    expect((await timedCheck(client, '/closed')).status).toBe(200);

    redis.freeze();
    // A burst in flight while frozen: all answered, none later than the budget.
    const burst = await Promise.all(
      Array.from({ length: 50 }, (_, i) => timedCheck(client!, i % 2 ? '/open' : '/closed')),
    );
    for (const [i, r] of burst.entries()) {
      expect(r.status).toBe(i % 2 ? 200 : 429);
      expect(r.ms).toBeLessThan(TIMEOUT_MS + BUDGET_SLACK_MS);
    }
    // Breaker open: later checks no longer wait for the timeout.
    const fast: number[] = [];
    for (let i = 0; i < 20; i++) fast.push((await timedCheck(client, '/closed')).ms);
    fast.sort((a, b) => a - b);
    expect(fast[10]!).toBeLessThan(TIMEOUT_MS / 2);
    // What an operator's alert sees: errors counted (one per limited check that fell back) and the breaker open.
    const whileFrozen = await metric(server, 'gatehouse_redis_errors_total');
    expect(whileFrozen).toBeGreaterThanOrEqual(25 + 20);
    expect(await metric(server, 'gatehouse_redis_breaker_state')).toBe(2);

    redis.thaw();
    let recovered = false;
    for (let i = 0; i < 100 && !recovered; i++) {
      recovered = (await timedCheck(client, '/closed')).status === 200;
      if (!recovered) await new Promise((r) => setTimeout(r, 100));
    }
    expect(recovered).toBe(true);
    expect(await metric(server, 'gatehouse_redis_breaker_state')).toBe(0);
    const transitions = logs
      .lines()
      .filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('breaker'));
    expect(transitions.map((l) => l['msg'])).toEqual([
      'rate-limit backend failing: breaker open, limits follow onBackendError',
      'rate-limit backend recovered: breaker closed',
    ]);
    // The closing line says how much the episode cost, in Gatehouse's words.
    expect(transitions[0]).toMatchObject({ cause: 'no answer in time' });
    expect(transitions[1]!['checksAffected']).toBeGreaterThanOrEqual(25 + 20);
    expect(JSON.stringify(logs.lines())).not.toMatch(
      /max retries|enableOfflineQueue|Stream isn't writeable|Connection is closed/,
    );
  });

  test('Redis answering: start-up does not sit out the 2 s wait meant for an unreachable Redis', async () => {
    redis = await startRedis();
    const started = performance.now();
    server = await startTestServer({
      policiesDir: POLICIES,
      redis: { url: redis.url, timeoutMs: TIMEOUT_MS },
    });
    // 405 ms measured on the shared machine; the wait it must not pay is 2000 ms.
    expect(performance.now() - started).toBeLessThan(1800);
  });

  test('quarantine and grant state with Redis frozen: one line when the episode starts, one when it ends, not one per denial', async () => {
    redis = await startRedis();
    const logs = memoryLogger();
    const dir = policyDir({
      'q.yaml': servicePolicy(
        'vault',
        ['vault'],
        `    - name: secrets
      allow: [spiffe://shop.example/ns/ops/**]`,
      ).replace('  rules:', '  quarantine: { denials: 1000, window: 1m, duration: 1m }\n  rules:'),
    });
    server = await startTestServer({
      policiesDir: dir,
      redis: { url: redis.url, timeoutMs: TIMEOUT_MS },
      log: logs.log,
    });
    client = checkClient(server.port);
    const deny = () =>
      client!.check(
        envoyCheckRequest({ principal: CHECKOUT_WEB, host: 'vault', path: '/x' }),
        5000,
      );
    expect((await deny()).status.code).toBe(7);
    redis.freeze();
    for (let batch = 0; batch < 6; batch++) {
      const answers = await Promise.all(Array.from({ length: 10 }, deny));
      expect(answers.every((a) => a.status.code === 7)).toBe(true); // still decided: a denial is a denial
    }
    const episodeLines = () =>
      logs.lines().filter((l) => /^quarantine state/.test(String(l['msg'])));
    await waitFor(() => episodeLines().length >= 1, 'the episode to open', 10_000);
    // Every denial's count has failed (each waits its own Redis budget) before Redis is back.
    const stateErrors = async () => {
      const line = (await server!.app.metrics.registry.metrics())
        .split('\n')
        .find((l) => l.startsWith('gatehouse_state_errors_total{component="quarantine"} '));
      return line === undefined ? 0 : Number(line.split(' ')[1]);
    };
    await waitFor(async () => (await stateErrors()) >= 60, 'every denial count to fail', 15_000);
    redis.thaw();
    await waitFor(() => episodeLines().length >= 2, 'the episode to close', 15_000);
    const [opened, closed] = episodeLines();
    expect(opened).toMatchObject({
      msg: expect.stringContaining('quarantine state unavailable'),
      cause: 'no answer in time',
    });
    expect(closed).toMatchObject({
      msg: 'quarantine state available again',
      cause: 'no answer in time',
    });
    expect(closed!['failedOperations']).toBeGreaterThanOrEqual(60);
    expect(episodeLines()).toHaveLength(2);
    expect(JSON.stringify(logs.lines())).not.toMatch(
      /max retries|enableOfflineQueue|Stream isn't writeable|Connection is closed|backend error/,
    );
  });
});
