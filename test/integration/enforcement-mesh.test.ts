import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { AdminServer } from '../../src/admin/admin-server';
import { verifyAuditText } from '../../src/audit/chain';
import { runCliAsync, spawnServe, type ServeProcess } from '../helpers/cli';
import { checkClient, type CheckClient } from '../helpers/grpc-client';
import { policyDir } from '../helpers/policies';
import { startRedis, type RedisProcess } from '../helpers/redis';
import { envoyCheckRequest, FRONTEND_WEB, ORDERS, EXPORTER } from '../helpers/requests';
import { waitFor } from '../helpers/wait';
import type { CheckInput } from '../../src/envoy/check-input';

/**
 * The mesh-wide parts of enforcement against real servers: two `gatehouse serve` replicas
 * share one real redis-server; an operator uses the CLI against the admin API.
 */

const POLICIES = {
  'customers.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: customers }
spec:
  hosts: [customers]
  quarantine: { denials: 3, window: 1m, duration: 10m, scope: mesh }
  rules:
    - name: export
      methods: [GET]
      paths: [/v1/export]
      allow:
        - { caller: ${EXPORTER}, expiresAfterUnused: 30d }
    - name: profile
      methods: [GET]
      paths: [/v1/profile]
      allow: [${FRONTEND_WEB}, ${ORDERS}]
`,
  'orders.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: orders }
spec:
  hosts: [orders]
  rules:
    - name: read
      methods: [GET]
      paths: [/v1/orders]
      allow: [${ORDERS}, ${FRONTEND_WEB}]
`,
  'vault.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: vault }
spec:
  hosts: [vault]
  quarantine: { denials: 2, window: 1m, duration: 10m }
  rules:
    - name: secrets
      allow: [${EXPORTER}]
`,
};

function request(caller: string, host: string, path: string): CheckInput {
  return envoyCheckRequest({ principal: caller, host, method: 'GET', path });
}

function reasonOf(res: { deniedResponse?: { body?: string } | null }): string | undefined {
  const body = res.deniedResponse?.body;
  return body ? (JSON.parse(body) as { reason: string }).reason : undefined;
}

describe('quarantine and grants shared by replicas through Redis', () => {
  let redis: RedisProcess;
  let a: ServeProcess;
  let b: ServeProcess;
  let clientA: CheckClient;
  let clientB: CheckClient;
  const auditDir = mkdtempSync(path.join(tmpdir(), 'gh-mesh-'));
  const dir = policyDir(POLICIES);

  beforeAll(async () => {
    redis = await startRedis();
    const common = [
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--redis',
      redis.url,
      '--no-watch',
    ];
    [a, b] = await Promise.all([
      spawnServe([...common, '--audit-log', path.join(auditDir, 'a.log')]),
      spawnServe([...common, '--audit-log', path.join(auditDir, 'b.log')]),
    ]);
    clientA = checkClient(a.port);
    clientB = checkClient(b.port);
  }, 60_000);

  afterAll(async () => {
    clientA?.close();
    clientB?.close();
    for (const s of [a, b]) if (s && s.child.exitCode === null) s.child.kill('SIGTERM');
    await Promise.all([a?.exited, b?.exited]);
    await redis?.stop();
  });

  test('denials on one replica quarantine the caller on every replica until an operator releases it', async () => {
    // Allowed before: orders reads the profile on replica B.
    expect(
      (await clientB.check(request(ORDERS, 'customers', '/v1/profile'))).status?.code ?? 0,
    ).toBe(0);
    // Three refusals by the customers policy, on replica A.
    for (let i = 0; i < 3; i++) {
      const res = await clientA.check(request(ORDERS, 'customers', '/v1/export'));
      expect(res.status?.code).toBe(7);
    }
    // Replica B, another host, a route the caller is allowed: quarantined, mesh-wide.
    await waitFor(
      async () =>
        reasonOf(await clientB.check(request(ORDERS, 'orders', '/v1/orders')))?.startsWith(
          'quarantined',
        ) === true,
      'quarantine on replica B',
    );
    const denied = await clientB.check(request(ORDERS, 'orders', '/v1/orders'));
    expect(denied.status?.code).toBe(7);
    expect(JSON.parse(denied.deniedResponse!.body!)).toMatchObject({
      error: 'forbidden',
      reason: expect.stringContaining('after 3 denials by policy customers'),
    });
    // Other callers are not affected.
    expect(
      (await clientB.check(request(FRONTEND_WEB, 'orders', '/v1/orders'))).status?.code ?? 0,
    ).toBe(0);
    // The gauge has a value on every replica, the one that mirrors the quarantine too.
    for (const s of [a, b]) {
      const text = await (await fetch(`http://127.0.0.1:${s.adminPort}/metrics`)).text();
      expect([
        s === a ? 'a' : 'b',
        /^gatehouse_quarantined_callers\{mode="enforce"\} 1$/m.test(text),
      ]).toEqual([s === a ? 'a' : 'b', true]);
    }

    // The operator sees it from either replica's admin API.
    const list = await runCliAsync([
      'quarantine',
      'list',
      '--admin',
      `http://127.0.0.1:${b.adminPort}`,
    ]);
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(
      new RegExp(`^${ORDERS.replace(/[/.]/g, '\\$&')}\\s+enforce\\s+customers\\s+3\\s`, 'm'),
    );
    const json = await runCliAsync([
      'quarantine',
      'list',
      '--json',
      '--admin',
      `http://127.0.0.1:${a.adminPort}`,
    ]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      callers: [{ caller: ORDERS, policy: 'customers', denials: 3, dryRun: false }],
    });

    // Released on A, allowed again on B.
    const released = await runCliAsync([
      'quarantine',
      'release',
      ORDERS,
      '--admin',
      `http://127.0.0.1:${a.adminPort}`,
    ]);
    expect(released).toMatchObject({ status: 0, stdout: `released ${ORDERS}\n` });
    await waitFor(
      async () =>
        ((await clientB.check(request(ORDERS, 'orders', '/v1/orders'))).status?.code ?? 0) === 0,
      'release on replica B',
    );
    expect(await (await fetch(`http://127.0.0.1:${b.adminPort}/metrics`)).text()).toMatch(
      /^gatehouse_quarantined_callers\{mode="enforce"\} 0$/m,
    );
    const again = await runCliAsync([
      'quarantine',
      'release',
      ORDERS,
      '--admin',
      `http://127.0.0.1:${a.adminPort}`,
    ]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('caller is not quarantined');

    // Entering and leaving are audit events, written once mesh-wide (by the replica that saw
    // it happen) and chained with the decisions, and metrics on that replica.
    await waitFor(
      async () => readFileSync(path.join(auditDir, 'a.log'), 'utf8').includes('quarantine.leave'),
      'leave event in the audit log',
    );
    const records = readFileSync(path.join(auditDir, 'a.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.filter((r) => r['event'] === 'quarantine.enter')).toEqual([
      expect.objectContaining({ caller: ORDERS, policy: 'customers', denials: 3, dry_run: false }),
    ]);
    expect(records.filter((r) => r['event'] === 'quarantine.leave')).toEqual([
      expect.objectContaining({ caller: ORDERS, cause: 'released' }),
    ]);
    expect(readFileSync(path.join(auditDir, 'b.log'), 'utf8')).not.toContain(
      '"event":"quarantine.',
    );
    expect(verifyAuditText(readFileSync(path.join(auditDir, 'a.log'), 'utf8'))).toMatchObject({
      ok: true,
    });
    const metrics = await (await fetch(`http://127.0.0.1:${a.adminPort}/metrics`)).text();
    expect(metrics).toMatch(
      /gatehouse_quarantine_events_total\{event="enter",cause="denials",mode="enforce"\} 1/,
    );
    expect(metrics).toMatch(
      /gatehouse_quarantine_events_total\{event="leave",cause="released",mode="enforce"\} 1/,
    );
  }, 30_000);

  test('a policy-scoped quarantine tripped on one replica isolates the caller from that policy only, on every replica', async () => {
    for (let i = 0; i < 2; i++)
      expect((await clientA.check(request(FRONTEND_WEB, 'vault', '/s'))).status?.code).toBe(7);
    await waitFor(
      async () =>
        reasonOf(await clientB.check(request(FRONTEND_WEB, 'vault', '/s')))?.startsWith(
          'quarantined',
        ) === true,
      'quarantine at vault on replica B',
    );
    expect(
      (await clientB.check(request(FRONTEND_WEB, 'orders', '/v1/orders'))).status?.code ?? 0,
    ).toBe(0);
    const json = await runCliAsync([
      'quarantine',
      'list',
      '--json',
      '--admin',
      `http://127.0.0.1:${b.adminPort}`,
    ]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      callers: [{ caller: FRONTEND_WEB, policy: 'vault', denials: 2 }],
    });
    expect(
      await runCliAsync([
        'quarantine',
        'release',
        FRONTEND_WEB,
        '--admin',
        `http://127.0.0.1:${a.adminPort}`,
      ]),
    ).toMatchObject({ status: 0 });
    await waitFor(
      async () =>
        reasonOf(await clientB.check(request(FRONTEND_WEB, 'vault', '/s')))?.startsWith(
          'quarantined',
        ) === false,
      'release at vault on replica B',
    );
  }, 30_000);

  test('a worker primary relays quarantine and access requests to its workers', async () => {
    const server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--redis',
      redis.url,
      '--no-watch',
      '--workers',
      '2',
      '--audit-log',
      '/dev/null',
    ]);
    try {
      const client = checkClient(server.port);
      for (let i = 0; i < 3; i++)
        await client.check(request(FRONTEND_WEB, 'customers', '/v1/export'));
      client.close();
      await waitFor(
        async () =>
          (
            await runCliAsync([
              'quarantine',
              'list',
              '--admin',
              `http://127.0.0.1:${server.adminPort}`,
            ])
          ).stdout.includes(FRONTEND_WEB),
        'the quarantine listed by the primary',
      );
      expect(
        await runCliAsync([
          'quarantine',
          'release',
          FRONTEND_WEB,
          '--admin',
          `http://127.0.0.1:${server.adminPort}`,
        ]),
      ).toMatchObject({ status: 0 });
      expect(
        (
          await runCliAsync([
            'access',
            'report',
            '--json',
            '--admin',
            `http://127.0.0.1:${server.adminPort}`,
          ])
        ).status,
      ).toBe(0);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  }, 30_000);

  test('access report lists grants by last use from any replica, and renew works mesh-wide', async () => {
    // The exporter uses its grant on replica A.
    expect(
      (await clientA.check(request(EXPORTER, 'customers', '/v1/export'))).status?.code ?? 0,
    ).toBe(0);
    // Replica B reports it once A has flushed its uses (every 2 s).
    let grants: Record<string, unknown>[] = [];
    await waitFor(async () => {
      const report = await runCliAsync([
        'access',
        'report',
        '--json',
        '--admin',
        `http://127.0.0.1:${b.adminPort}`,
      ]);
      expect(report.status).toBe(0);
      grants = (JSON.parse(report.stdout) as { grants: Record<string, unknown>[] }).grants;
      return grants.some((g) => g['caller'] === EXPORTER);
    }, "the use on replica A in replica B's report");
    expect(grants).toEqual([
      expect.objectContaining({
        policy: 'customers',
        rule: 'export',
        entry: 0,
        pattern: EXPORTER,
        caller: EXPORTER,
        dormant: false,
        lastUsed: expect.any(Number),
      }),
    ]);
    const text = await runCliAsync([
      'access',
      'report',
      '--admin',
      `http://127.0.0.1:${b.adminPort}`,
    ]);
    expect(text.stdout).toMatch(/^GRANT\s+PATTERN\s+CALLER\s+LAST USED\s+STATE$/m);
    expect(text.stdout).toMatch(/customers\/export\/allow\[0\].*\d+s ago\s+expires in 30d/);
    const renewed = await runCliAsync([
      'access',
      'renew',
      'customers',
      '--rule',
      'export',
      '--admin',
      `http://127.0.0.1:${b.adminPort}`,
    ]);
    expect(renewed.status).toBe(0);
    expect(renewed.stdout).toMatch(/^renewed [1-9]\d* grant use\(s\) of policy customers$/m);
  }, 30_000);
});

describe('admin changes need loopback or the token', () => {
  const providers = {
    readiness: () => ({ checks: {}, failing: [] }),
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    policy: () => ({}),
    quarantine: { list: async () => [], release: async (caller: string) => ({ caller }) },
  };

  test('with a token configured, a wrong token is refused even from loopback, the right one works', async () => {
    const token = Buffer.from('0123456789abcdef-admin');
    const admin = new AdminServer(providers, pino({ level: 'silent' }), { token });
    const port = await admin.listen('127.0.0.1', 0);
    try {
      const release = (auth?: string): Promise<Response> =>
        fetch(`http://127.0.0.1:${port}/v1/quarantine/release`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
          body: JSON.stringify({ caller: ORDERS }),
        });
      expect((await release('Bearer wrong-token-of-any-length')).status).toBe(403);
      expect((await release(`Bearer ${token.toString()}`)).status).toBe(200);
      // Loopback without any token is trusted: `kubectl exec … gatehouse quarantine release`.
      expect((await release()).status).toBe(200);
      const json = { 'content-type': 'application/json' };
      expect(
        (
          await fetch(`http://127.0.0.1:${port}/v1/quarantine/release`, {
            method: 'POST',
            headers: json,
            body: 'x'.repeat(20_000),
          })
        ).status,
      ).toBe(400);
      expect(
        (
          await fetch(`http://127.0.0.1:${port}/v1/quarantine/release`, {
            method: 'POST',
            headers: json,
            body: '{"caller": 1}',
          })
        ).status,
      ).toBe(400);
      expect((await fetch(`http://127.0.0.1:${port}/v1/access`)).status).toBe(501);
    } finally {
      await admin.close();
    }
  });
});

test('quarantine list fails clearly when no server answers', async () => {
  const r = await runCliAsync(['quarantine', 'list', '--admin', 'http://127.0.0.1:1']);
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/cannot reach the admin API at http:\/\/127\.0\.0\.1:1/);
});
