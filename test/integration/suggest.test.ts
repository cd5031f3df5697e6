import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { recordTraffic } from '../helpers/audit-traffic';
import { runCli } from '../helpers/cli';
import { policyDir } from '../helpers/policies';
import {
  CHECKOUT_WEB,
  envoyCheckRequest,
  FRONTEND_WEB,
  type RequestSpec,
  EXPORTER,
} from '../helpers/requests';

const ORDERS_WORKLOAD = 'spiffe://shop.example/ns/orders/sa/orders';

// A dry-run rollout: the policy admits nobody yet, so every request is allowed and recorded
// with the denial it would have made. Payments is another destination in the same log.
const ROLLOUT = {
  'orders.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: orders }
spec:
  hosts: [orders, orders.shop.svc.cluster.local]
  mode: dry-run
  rules:
    - name: nobody-yet
      allow: [spiffe://shop.example/ns/nobody/sa/nobody]
`,
  'payments.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: payments }
spec:
  hosts: [payments]
  rules:
    - name: charge
      methods: [POST]
      paths: [/v1/charges]
      allow: [${ORDERS_WORKLOAD}]
`,
};

const TRAFFIC: RequestSpec[] = [
  ...Array.from({ length: 12 }, (_, i): RequestSpec => ({
    principal: CHECKOUT_WEB,
    method: 'GET',
    path: `/v1/orders/${1000 + i}?expand=items`,
  })),
  ...Array.from({ length: 4 }, (_, i): RequestSpec => ({
    principal: FRONTEND_WEB,
    method: 'GET',
    path: `/v1/orders/${2000 + i}`,
  })),
  ...Array.from({ length: 5 }, (): RequestSpec => ({
    principal: FRONTEND_WEB,
    method: 'POST',
    path: '/v1/orders',
  })),
  ...Array.from({ length: 3 }, (): RequestSpec => ({
    principal: CHECKOUT_WEB,
    method: 'POST',
    path: '/v1/orders',
  })),
  ...Array.from({ length: 2 }, (): RequestSpec => ({
    principal: EXPORTER,
    method: 'GET',
    path: '/v1/orders/export',
  })),
  {
    principal: CHECKOUT_WEB,
    method: 'GET',
    path: '/v1/orders/1003/items',
    host: 'orders.shop.svc.cluster.local',
  },
  ...Array.from({ length: 2 }, (): RequestSpec => ({
    principal: ORDERS_WORKLOAD,
    method: 'POST',
    path: '/v1/charges',
    host: 'payments',
  })),
  // Denied by payments' policy: never evidence for a rule.
  { principal: CHECKOUT_WEB, method: 'POST', path: '/v1/charges', host: 'payments' },
];

let auditFile: string;

beforeAll(async () => {
  auditFile = path.join(mkdtempSync(path.join(tmpdir(), 'gatehouse-suggest-')), 'audit.log');
  const requests = TRAFFIC.map((spec) => {
    const request = envoyCheckRequest({ host: 'orders', ...spec }) as {
      attributes: { destination: { principal: string } };
    };
    if (spec.host === 'payments')
      request.attributes.destination.principal = 'spiffe://shop.example/ns/payments/sa/payments';
    return request;
  });
  await recordTraffic(policyDir(ROLLOUT), auditFile, requests);
}, 60_000);

describe('gatehouse suggest', () => {
  test('proposes least privilege per destination that validates, passes its own tests, and replays with no new denial', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-suggested-'));
    const run = runCli(['suggest', '--audit', auditFile, '--workload', ORDERS_WORKLOAD, '-o', out]);
    expect(run.status).toBe(0);
    expect(readdirSync(out).sort()).toEqual([
      'suggested-ns-orders-sa-orders.test.yaml',
      'suggested-ns-orders-sa-orders.yaml',
    ]);
    const policy = readFileSync(path.join(out, 'suggested-ns-orders-sa-orders.yaml'), 'utf8');
    // Ids collapse, names stay; callers per method and path are exactly those seen, with counts.
    expect(policy).toContain('paths: ["/v1/orders/export"]');
    expect(policy).toContain('paths: ["/v1/orders/*"]');
    expect(policy).toContain('paths: ["/v1/orders/*/items"]');
    expect(policy).not.toContain('/v1/orders/1000');
    expect(policy).toContain(`- "${CHECKOUT_WEB}"   # 12 requests`);
    expect(policy).toContain('# 16 requests from 2 callers');
    expect(policy).not.toContain('payments');
    // Bound to the workload the requests went to, as Envoy names it.
    expect(policy).toContain(`workloads: ["${ORDERS_WORKLOAD}"]`);
    expect(
      readFileSync(path.join(out, 'suggested-ns-orders-sa-orders.test.yaml'), 'utf8'),
    ).toContain(`destination: "${ORDERS_WORKLOAD}"`);
    expect(policy).not.toContain('expand');

    expect(runCli(['validate', out]).status).toBe(0);
    const tests = runCli(['test', out, '--coverage']);
    expect(tests.stdout).toMatch(/policy-tests: 4 passed, 0 failed/);
    expect(tests.status).toBe(0);

    const orders = runCli(['replay', out, '--audit', auditFile, '--json']);
    const report = JSON.parse(orders.stdout) as {
      allowToDeny: number;
      changes: { host: string; change: string }[];
    };
    // Only payments' traffic (not suggested here) changes: orders loses nothing.
    expect(
      report.changes.filter((g) => g.host.startsWith('orders') && g.change === 'allow-to-deny'),
    ).toEqual([]);
  });

  test('every destination at once: replaying the log against all suggested policies denies nothing that was allowed', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-suggested-'));
    expect(runCli(['suggest', '--audit', auditFile, '-o', out]).status).toBe(0);
    expect(runCli(['test', out]).status).toBe(0);
    const replay = runCli([
      'replay',
      out,
      '--audit',
      auditFile,
      '--fail-on',
      'new-denials',
      '--json',
    ]);
    expect(replay.status).toBe(0);
    expect(JSON.parse(replay.stdout)).toMatchObject({
      allowToDeny: 0,
      denyToAllow: 0,
      records: TRAFFIC.length,
    });
  });

  test('a forged log cannot make it write a policy that does not validate or smuggles YAML', () => {
    const forged = path.join(mkdtempSync(path.join(tmpdir(), 'gatehouse-forged-')), 'forged.log');
    const line = (fields: Record<string, unknown>): string =>
      JSON.stringify({
        msg: 'decision',
        decision_id: 'f',
        time: '2026-12-05T00:00:00Z',
        result: 'allow',
        reason_code: 'allowed',
        caller: CHECKOUT_WEB,
        host: 'orders',
        method: 'GET',
        path: '/v1/x',
        destination: ORDERS_WORKLOAD,
        ...fields,
      });
    writeFileSync(
      forged,
      [
        line({ caller: 'not-a-spiffe-id' }),
        line({ method: 'get' }),
        line({ host: 'h'.repeat(300) }),
        line({ path: `/${'p'.repeat(2000)}` }),
        line({ path: '/v1/a"\n  mode: dry-run', host: 'orders\n#' }),
        line({ path: '/v1/b"\n  mode: dry-run' }),
        line({ path: '/v1/../admin' }),
        line({ destination: 'spiffe://shop.example/ns/x/sa/"\nkind: Other' }),
      ].join('\n'),
    );
    const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-suggested-'));
    expect(runCli(['suggest', '--audit', auditFile, forged, '-o', out]).status).toBe(0);
    expect(runCli(['validate', out]).status).toBe(0);
    expect(runCli(['test', out]).status).toBe(0);
    const all = readdirSync(out)
      .map((f) => readFileSync(path.join(out, f), 'utf8'))
      .join('\n');
    expect(all).not.toContain('not-a-spiffe-id');
    expect(all).not.toMatch(/^\s*mode: dry-run/m);
    expect(all).not.toMatch(/^kind: Other/m);
  });

  test('--host picks one policy; stdin and nothing to suggest are refused clearly', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-suggested-'));
    expect(runCli(['suggest', '--audit', auditFile, '--host', 'payments', '-o', out]).status).toBe(
      0,
    );
    expect(
      readFileSync(path.join(out, 'suggested-ns-payments-sa-payments.yaml'), 'utf8'),
    ).not.toContain(CHECKOUT_WEB);
    const stdin = runCli(['suggest', '--audit', '-', '-o', out], '');
    expect([stdin.status, stdin.stderr]).toEqual([2, expect.stringContaining('not stdin')]);
    const none = runCli(['suggest', '--audit', auditFile, '--host', 'nowhere', '-o', out]);
    expect([none.status, none.stderr]).toEqual([2, expect.stringContaining('nothing to suggest')]);
  });
});
