import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadProtos } from '../../src/server/protos';
import { runCli, spawnServe, type ServeProcess } from '../helpers/cli';
import { checkClient, type CheckClient } from '../helpers/grpc-client';
import {
  EXAMPLE_SERVE_ARGS,
  policyDir,
  servicePolicy,
  EXAMPLE_POLICY_ARGS,
} from '../helpers/policies';
import { freePort } from '../helpers/ports';
import { CHECKOUT_BATCH, CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { readJsonLines } from '../helpers/server';
import { waitFor } from '../helpers/wait';

async function get(
  port: number,
  urlPath: string,
  method = 'GET',
): Promise<{ status: number; text: string; json: () => Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { method });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

function metricValue(text: string, line: string): number {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? NaN : Number(found.slice(line.length + 1));
}

async function stopServer(server: ServeProcess): Promise<number | null> {
  if (server.child.exitCode === null) server.child.kill('SIGTERM');
  return server.exited;
}

const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'gh-ops-'));

describe('admin endpoints (single process)', () => {
  let server: ServeProcess;
  let client: CheckClient;
  let dir: string;
  const policy = (caller: string) =>
    servicePolicy(
      'ops',
      ['ops'],
      `    - name: r
      allow: [${caller}]`,
    );

  beforeAll(async () => {
    dir = policyDir({ 'p.yaml': policy('spiffe://shop.example/a') });
    server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--no-watch',
      '--audit-log',
      path.join(tmp(), 'a.log'),
    ]);
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client.close();
    expect(await stopServer(server)).toBe(0);
  });

  test('/healthz and /readyz', async () => {
    expect(await get(server.adminPort, '/healthz')).toMatchObject({ status: 200 });
    const ready = await get(server.adminPort, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json()).toMatchObject({
      status: 'ready',
      checks: { policies: expect.stringMatching(/^loaded [0-9a-f]{16}$/) },
    });
  });

  test('/metrics counts checks by result, status, reason and policy, with a latency histogram', async () => {
    await client.check(
      envoyCheckRequest({ principal: 'spiffe://shop.example/a', host: 'ops', path: '/' }),
    );
    await client.check(
      envoyCheckRequest({ principal: 'spiffe://shop.example/b', host: 'ops', path: '/' }),
    );
    await client.check(
      envoyCheckRequest({ principal: 'spiffe://shop.example/b', host: 'ops', path: '/' }),
    );
    const { status, text } = await get(server.adminPort, '/metrics');
    expect(status).toBe(200);
    expect(
      metricValue(
        text,
        'gatehouse_checks_total{result="allow",status="200",reason="allowed",policy="ops"}',
      ),
    ).toBe(1);
    expect(
      metricValue(
        text,
        'gatehouse_checks_total{result="deny",status="403",reason="caller_not_allowed",policy="ops"}',
      ),
    ).toBe(2);
    expect(metricValue(text, 'gatehouse_check_duration_seconds_count{result="deny"}')).toBe(2);
    expect(text).toContain('gatehouse_check_duration_seconds_bucket{le="0.001",result="allow"}');
    expect(text).toContain(
      `gatehouse_build_info{version="${require('../../package.json').version}",node="${process.version}"}`,
    );
    expect(text).toContain('gatehouse_redis_breaker_state 0');
  });

  test('/metrics has the default process metrics: CPU, memory, heap, GC, event-loop lag', async () => {
    const { text } = await get(server.adminPort, '/metrics');
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_active_handles_total',
    ]) {
      expect([name, Number.isFinite(metricValue(text, name))]).toEqual([name, true]);
    }
    expect(text).toContain('# TYPE nodejs_gc_duration_seconds histogram');
    // Without quarantines the gauge still has a value, so alerts on it never see "no data".
    expect(metricValue(text, 'gatehouse_quarantined_callers{mode="enforce"}')).toBe(0);
  });

  test('the operational log names its levels', () => {
    const lines = server
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.find((l) => l['msg'] === 'gatehouse serving')).toMatchObject({ level: 'info' });
    for (const l of lines)
      expect(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).toContain(l['level']);
  });

  test('/v1/policy shows the version, policies and reload history; reloads are counted', async () => {
    const before = (await get(server.adminPort, '/v1/policy')).json();
    expect(before).toMatchObject({
      policies: [{ name: 'ops', mode: 'enforce', hosts: ['ops'], rules: ['r'] }],
      history: [{ result: 'loaded' }],
    });
    writeFileSync(path.join(dir, 'p.yaml'), policy('spiffe://shop.example/b'));
    server.child.kill('SIGHUP');
    await waitFor(
      async () =>
        (await get(server.adminPort, '/v1/policy')).json()['version'] !== before['version'],
      'reload',
    );
    writeFileSync(path.join(dir, 'p.yaml'), 'apiVersion: [');
    server.child.kill('SIGHUP');
    await waitFor(
      async () =>
        ((await get(server.adminPort, '/v1/policy')).json()['history'] as unknown[]).length === 3,
      'rejected reload',
    );
    const after = (await get(server.adminPort, '/v1/policy')).json();
    expect((after['history'] as { result: string }[]).map((h) => h.result)).toEqual([
      'rejected',
      'reloaded',
      'loaded',
    ]);
    const metrics = (await get(server.adminPort, '/metrics')).text;
    expect(metricValue(metrics, 'gatehouse_policy_reloads_total{result="ok"}')).toBe(1);
    expect(metricValue(metrics, 'gatehouse_policy_reloads_total{result="rejected"}')).toBe(1);
    expect(metrics).toContain(`gatehouse_policy_info{version="${after['version']}"} 1`);
  });

  test('unknown paths are 404 and other methods 405', async () => {
    expect((await get(server.adminPort, '/nope')).status).toBe(404);
    expect((await get(server.adminPort, '/readyz', 'POST')).status).toBe(405);
  });
});

test.each([
  ['one process', '1'],
  ['two workers', '2'],
])(
  '/readyz is 503 while Redis is configured and unreachable, unless the probe excludes it (%s)',
  async (_name, workers) => {
    const server = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--redis',
      `redis://127.0.0.1:${await freePort()}`,
      '--audit-log',
      '/dev/null',
      '--workers',
      workers,
    ]);
    try {
      // Both workers up and reporting (each sees Redis unreachable, and still serves checks).
      if (workers !== '1')
        await waitFor(
          async () =>
            (
              (await get(server.adminPort, '/v1/policy')).json()['workers'] as {
                version: string | null;
              }[]
            ).every((w) => w.version !== null),
          'worker statuses',
        );
      const ready = await get(server.adminPort, '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.json()).toMatchObject({
        status: 'not ready',
        checks: { redis: 'unreachable' },
        failing: ['redis'],
      });
      // A probe that must keep replicas in service through a Redis outage excludes the check.
      const excluded = await get(server.adminPort, '/readyz?exclude=redis');
      expect(excluded.status).toBe(200);
      expect(excluded.json()).toMatchObject({ status: 'ready', checks: { redis: 'unreachable' } });
      expect((await get(server.adminPort, '/readyz?exclude=workers')).status).toBe(503);
    } finally {
      await stopServer(server);
    }
  },
);

test('grpc.health Watch reports NOT_SERVING when draining starts', async () => {
  const server = await spawnServe([...EXAMPLE_SERVE_ARGS]);
  const { HealthClient } = loadProtos();
  const health = new HealthClient(
    `127.0.0.1:${server.port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as grpc.Client & { Watch: Function };
  const seen: number[] = [];
  const stream = health.Watch({ service: '' }) as grpc.ClientReadableStream<{ status: number }>;
  stream.on('data', (m: { status: number }) => seen.push(m.status));
  stream.on('error', () => undefined);
  await waitFor(() => seen.length > 0, 'first health status');
  server.child.kill('SIGTERM');
  expect(await server.exited).toBe(0);
  await waitFor(() => seen.includes(2), 'NOT_SERVING');
  expect(seen).toEqual([1, 2]);
  health.close();
});

test('--shutdown-wait: after SIGTERM, unary health Check says NOT_SERVING and /readyz 503 while checks are still answered', async () => {
  const server = await spawnServe([...EXAMPLE_SERVE_ARGS, '--shutdown-wait', '1500']);
  const client = checkClient(server.port);
  try {
    expect(await client.health('')).toEqual({ status: 1 });
    const killedAt = Date.now();
    server.child.kill('SIGTERM');
    // What a polling health checker (Envoy's grpc_health_check) sees during the wait.
    await waitFor(
      async () => (await client.health('')).status === 2,
      'NOT_SERVING once SIGTERM arrived',
      1000,
    );
    expect(await client.health('')).toEqual({ status: 2 });
    expect((await get(server.adminPort, '/readyz')).status).toBe(503);
    const r = await client.check(
      envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET', path: '/v1/orders/1' }),
    );
    expect(r.status?.code ?? 0).toBe(0);
    expect(await server.exited).toBe(0);
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(1400);
  } finally {
    client.close();
  }
});

describe('--workers 2', () => {
  let server: ServeProcess;
  let auditDir: string;

  beforeAll(async () => {
    auditDir = tmp();
    server = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--workers',
      '2',
      '--audit-log',
      path.join(auditDir, 'audit.log'),
    ]);
    await waitFor(
      async () => (await get(server.adminPort, '/readyz')).status === 200,
      'workers ready',
    );
  });
  afterAll(async () => {
    expect(await stopServer(server)).toBe(0);
  });

  const clients = (n: number): CheckClient[] =>
    Array.from({ length: n }, () => checkClient(server.port));

  test('workers share the port; metrics are aggregated over them; /v1/policy lists them', async () => {
    // grpc-js shares one connection per target unless told otherwise; several clients with
    // their own channels spread over the workers.
    const many = Array.from({ length: 6 }, () => {
      const { AuthorizationClient } = loadProtos();
      return new AuthorizationClient(
        `127.0.0.1:${server.port}`,
        grpc.credentials.createInsecure(),
        { 'grpc.use_local_subchannel_pool': 1 },
      ) as unknown as grpc.Client & { Check: Function };
    });
    await Promise.all(
      many.flatMap((c) =>
        Array.from(
          { length: 5 },
          () =>
            new Promise((resolve, reject) =>
              c.Check(
                envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET', path: '/v1/orders/1' }),
                (e: Error | null) => (e ? reject(e) : resolve(null)),
              ),
            ),
        ),
      ),
    );
    many.forEach((c) => c.close());
    const metrics = (await get(server.adminPort, '/metrics')).text;
    expect(
      metricValue(
        metrics,
        'gatehouse_checks_total{result="allow",status="200",reason="allowed",policy="orders"}',
      ),
    ).toBe(30);
    expect(metricValue(metrics, 'gatehouse_workers')).toBe(2);
    // The workers' process metrics are aggregated, and no family is written twice (Prometheus refuses a second TYPE line).
    expect(Number.isFinite(metricValue(metrics, 'nodejs_eventloop_lag_seconds'))).toBe(true);
    const types = metrics.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(types.length).toBe(new Set(types.map((l) => l.split(' ')[2])).size);
    const info = (await get(server.adminPort, '/v1/policy')).json();
    expect((info['workers'] as { ready: boolean }[]).map((w) => w.ready)).toEqual([true, true]);
    expect(info['history']).toEqual([
      { at: expect.any(String), result: 'loaded', version: info['version'] },
    ]);
    const files = ['audit.w1.log', 'audit.w2.log'].map((f) => path.join(auditDir, f));
    const counts = files.map((f) => readJsonLines(f).length);
    expect(counts[0]! + counts[1]!).toBe(30);
    expect(counts.every((c) => c > 0)).toBe(true);
    for (const f of files) expect(runCli(['audit', 'verify', f]).status).toBe(0);
  });

  test('a worker that dies is restarted and checks keep being answered', async () => {
    const pids = () =>
      get(server.adminPort, '/v1/policy').then((r) =>
        (r.json()['workers'] as { pid: number }[]).map((w) => w.pid),
      );
    const before = await pids();
    process.kill(before[0]!, 'SIGKILL');
    await waitFor(async () => {
      const now = await pids();
      return now[0] !== before[0] && (await get(server.adminPort, '/readyz')).status === 200;
    }, 'worker restart');
    expect(server.stderr()).toContain('worker died; restarting');
    const [client] = clients(1);
    expect(
      (await client!.check(envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' }))).status
        ?.code ?? 0,
    ).toBe(0);
    client!.close();
    expect(
      metricValue(
        (await get(server.adminPort, '/metrics')).text,
        'gatehouse_worker_restarts_total',
      ),
    ).toBe(1);
  });

  test('a rolling restart (SIGUSR2) under load loses no check', async () => {
    const pool = clients(4);
    const before = (
      (await get(server.adminPort, '/v1/policy')).json()['workers'] as { pid: number }[]
    ).map((w) => w.pid);
    let answered = 0;
    let failed = 0;
    let restarted = false;
    const stopAt = Date.now() + 15_000;
    const worker = async (client: CheckClient): Promise<void> => {
      for (let i = 0; i < 5000 && Date.now() < stopAt && !(restarted && i > 50); i++) {
        try {
          const r = await client.check(
            envoyCheckRequest({ principal: i % 3 ? CHECKOUT_WEB : CHECKOUT_BATCH }),
          );
          if (r.status !== undefined) answered++;
        } catch {
          failed++;
        }
      }
    };
    const load = Promise.all(pool.flatMap((c) => [worker(c), worker(c)]));
    // The restart starts with checks in flight on every connection.
    await waitFor(() => answered >= 20, 'checks answered before the restart', 5000);
    server.child.kill('SIGUSR2');
    await waitFor(
      () => server.stderr().includes('rolling restart complete'),
      'rolling restart',
      15_000,
    );
    restarted = true;
    await load;
    pool.forEach((c) => c.close());
    const after = (
      (await get(server.adminPort, '/v1/policy')).json()['workers'] as { pid: number }[]
    ).map((w) => w.pid);
    expect(after.some((pid) => before.includes(pid))).toBe(false);
    expect(failed).toBe(0);
    expect(answered).toBeGreaterThan(100);
  });
});

test('workers sharing stdout: the primary writes every record, so even records longer than a pipe write never interleave', async () => {
  const server = await spawnServe([...EXAMPLE_POLICY_ARGS, '--workers', '2']);
  await waitFor(
    async () =>
      ((await get(server.adminPort, '/v1/policy')).json()['workers'] as { ready: boolean }[]).every(
        (w) => w.ready,
      ),
    'both workers ready',
  );
  // Connections of their own, so the cluster's round robin hands them to both workers.
  const clients = Array.from({ length: 4 }, () =>
    checkClient(server.port, { ownConnection: true }),
  );
  try {
    // 7 KB paths: one record is larger than PIPE_BUF (4096), the most a pipe writes atomically.
    const long = `/v1/orders/${'a'.repeat(7000)}`;
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = 0; i < 50; i++) {
          const r = await client.check(
            envoyCheckRequest({
              principal: CHECKOUT_WEB,
              method: 'GET',
              path: i % 2 ? long : `/v1/orders/${c}-${i}`,
            }),
          );
          expect(r.status?.code ?? 0).toBe(0);
        }
      }),
    );
  } finally {
    for (const client of clients) client.close();
    expect(await stopServer(server)).toBe(0);
  }
  const file = path.join(tmp(), 'stdout-audit.log');
  writeFileSync(file, server.stdout());
  const records = readJsonLines(file);
  expect(records).toHaveLength(200);
  expect(new Set(records.map((r) => r['chain'])).size).toBe(2); // both workers' chains, through one writer
  const verified = runCli(['audit', 'verify', file]);
  expect(verified.stdout + verified.stderr).not.toContain('altered');
  expect(verified.status).toBe(0);
});

test('gatehouse audit verify: 0 on an intact log, 1 naming the first altered record', async () => {
  const dir = tmp();
  const audit = path.join(dir, 'audit.log');
  const server = await spawnServe([...EXAMPLE_POLICY_ARGS, '--audit-log', audit]);
  const client = checkClient(server.port);
  for (let i = 0; i < 6; i++) {
    await client.check(
      envoyCheckRequest({
        principal: i % 2 ? CHECKOUT_WEB : CHECKOUT_BATCH,
        headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      }),
    );
  }
  client.close();
  expect(await stopServer(server)).toBe(0);
  const ok = runCli(['audit', 'verify', audit]);
  expect(ok.status).toBe(0);
  expect(ok.stdout).toContain('ok: 6 record(s) in 1 chain(s)');
  expect(readJsonLines(audit)[0]).toMatchObject({
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  });

  const lines = readFileSync(audit, 'utf8').split('\n');
  // Record 3 (i = 2) is a refusal; flip it to an allow.
  expect(lines[2]).toContain('"result":"deny","status":403');
  lines[2] = lines[2]!.replace('"result":"deny","status":403', '"result":"allow","status":200');
  const tampered = path.join(dir, 'tampered.log');
  writeFileSync(tampered, lines.join('\n'));
  const bad = runCli(['audit', 'verify', tampered]);
  expect(bad.status).toBe(1);
  expect(bad.stdout).toContain(`${tampered}:3: record altered`);
});

test('no token, authorization header or key material reaches logs, audit records or deny bodies', async () => {
  const dir = tmp();
  const audit = path.join(dir, 'audit.log');
  const secrets = [
    'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl',
    'Basic dXNlcjpodW50ZXIy',
    'sk_live_51HqSecretKey',
    '-----BEGIN PRIVATE KEY-----',
  ];
  const server = await spawnServe([
    ...EXAMPLE_POLICY_ARGS,
    '--trust-xfcc',
    '--log-level',
    'trace',
    '--audit-log',
    audit,
  ]);
  const client = checkClient(server.port);
  const bodies: string[] = [];
  const requests = [
    envoyCheckRequest({ headers: { authorization: `Bearer ${secrets[0]}` } }),
    envoyCheckRequest({
      principal: CHECKOUT_BATCH,
      headers: { authorization: secrets[1]!, 'x-api-key': secrets[2]! },
    }),
    envoyCheckRequest({ principal: CHECKOUT_WEB, path: `/v1/orders?api_key=${secrets[2]}` }),
    envoyCheckRequest({
      headers: {
        'x-forwarded-client-cert': `Hash=ab;Cert="${encodeURIComponent(secrets[3]!)}";URI=spiffe://shop.example/ns/x/sa/y`,
      },
    }),
    envoyCheckRequest({
      principal: CHECKOUT_WEB,
      host: 'nowhere',
      headers: { cookie: `session=${secrets[2]}` },
    }),
  ];
  for (const r of requests) {
    const response = await client.check(r);
    bodies.push(JSON.stringify(response));
  }
  client.close();
  expect(await stopServer(server)).toBe(0);
  const everything = [
    readFileSync(audit, 'utf8'),
    server.stderr(),
    server.stdout(),
    ...bodies,
  ].join('\n');
  for (const secret of secrets) {
    expect(everything).not.toContain(secret);
    expect(everything).not.toContain(encodeURIComponent(secret));
  }
});
