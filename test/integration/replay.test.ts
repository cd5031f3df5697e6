import { createWriteStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { once } from 'node:events';
import { replay } from '../../src/replay/replay';
import { recordTraffic } from '../helpers/audit-traffic';
import { runCli, runCliAsync } from '../helpers/cli';
import { loadSet } from '../helpers/engine';
import { policyDir } from '../helpers/policies';
import {
  CHECKOUT_BATCH,
  CHECKOUT_WEB,
  envoyCheckRequest,
  FRONTEND_WEB,
  type RequestSpec,
} from '../helpers/requests';

const PAYMENTS_API = 'spiffe://shop.example/ns/payments/sa/api';

function ordersPolicy(readers: string, creators: string): string {
  return `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: orders }
spec:
  hosts: [orders]
  rules:
    - name: create-order
      methods: [POST]
      paths: [/v1/orders]
      allow: [${creators}]
      deny: [spiffe://shop.example/ns/checkout/sa/batch]
    - name: read-orders
      methods: [GET]
      paths: [/v1/orders, /v1/orders/*]
      allow: [${readers}]
    - name: debug
      methods: [GET]
      paths: [/v1/debug]
      allow: [${CHECKOUT_WEB}]
      when: '"x-debug" in request.headers'
    - name: tenant
      methods: [GET]
      paths: [/v1/tenants/*]
      allow: [${CHECKOUT_WEB}]
      when: 'request.headers[?"x-tenant"].orValue("") == "a"'
`;
}

const BASE = ordersPolicy(
  `${FRONTEND_WEB}, spiffe://shop.example/ns/checkout/**`,
  `${FRONTEND_WEB}, spiffe://shop.example/ns/checkout/sa/*`,
);
// The edit under review: checkout loses read access, payments gains order creation.
const EDITED = ordersPolicy(
  FRONTEND_WEB,
  `${FRONTEND_WEB}, spiffe://shop.example/ns/checkout/sa/*, spiffe://shop.example/ns/payments/sa/*`,
);

/** The traffic the server sees, with how often each request is sent. */
const TRAFFIC: [number, RequestSpec][] = [
  [
    5,
    {
      principal: CHECKOUT_WEB,
      method: 'GET',
      path: '/v1/orders/42?page=2&token=S3CRET-QUERY-VALUE',
    },
  ],
  [3, { principal: CHECKOUT_BATCH, method: 'GET', path: '/v1/orders/7' }],
  [2, { principal: CHECKOUT_BATCH, method: 'POST', path: '/v1/orders' }],
  [4, { principal: PAYMENTS_API, method: 'POST', path: '/v1/orders' }],
  [
    2,
    {
      principal: FRONTEND_WEB,
      method: 'POST',
      path: '/v1/orders',
      headers: { cookie: 'session=S3CRET-COOKIE' },
    },
  ],
  [
    2,
    {
      principal: CHECKOUT_WEB,
      method: 'GET',
      path: '/v1/debug',
      headers: { 'x-debug': 'S3CRET-DEBUG' },
    },
  ],
  [1, { principal: CHECKOUT_WEB, method: 'GET', path: '/v1/debug' }],
  [
    2,
    { principal: CHECKOUT_WEB, method: 'GET', path: '/v1/tenants/a', headers: { 'x-tenant': 'a' } },
  ],
  [1, { method: 'GET', path: '/v1/orders' }],
];
const TOTAL = TRAFFIC.reduce((sum, [n]) => sum + n, 0);

interface ReportJson {
  records: number;
  unchanged: number;
  allowToDeny: number;
  denyToAllow: number;
  cannotTell: number;
  policyIndependent: number;
  skipped: number;
  invalid: number;
  changes: {
    change: string;
    caller: string;
    host: string;
    rule: string;
    reason: string;
    count: number;
    first: string;
    last: string;
    example: string;
  }[];
  cannotTellGroups: { reason: string; rule: string; count: number }[];
  rules?: { added: string[]; removed: string[]; changed: string[] };
  recordsPerSecond: number;
}

let work: string;
let baseDir: string;
let editedDir: string;
let auditFile: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'gatehouse-replay-'));
  baseDir = policyDir({ 'orders.yaml': BASE });
  editedDir = policyDir({ 'orders.yaml': EDITED });
  auditFile = path.join(work, 'audit.log');
  await recordTraffic(
    baseDir,
    auditFile,
    TRAFFIC.flatMap(([times, spec]) =>
      Array.from({ length: times }, () => envoyCheckRequest({ host: 'orders', ...spec })),
    ),
  );
}, 60_000);

function replayJson(
  args: string[],
  input?: string,
): { status: number | null; report: ReportJson; stderr: string } {
  const r = runCli(['replay', ...args, '--json'], input);
  if (r.stdout === '') throw new Error(`replay printed nothing (exit ${r.status}): ${r.stderr}`);
  return { status: r.status, report: JSON.parse(r.stdout) as ReportJson, stderr: r.stderr };
}

describe('audit records written by a running gatehouse serve', () => {
  test('hold the destination, query keys and tracked header presence, never a value, and the chain verifies', () => {
    const text = readFileSync(auditFile, 'utf8');
    expect(text).not.toMatch(/S3CRET/);
    const records = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => r['msg'] === 'decision');
    expect(records).toHaveLength(TOTAL);
    expect(records[0]).toMatchObject({
      destination: 'spiffe://shop.example/ns/orders/sa/orders',
      query_keys: ['page', 'token'],
      header_presence: { 'x-debug': false, 'x-tenant': false },
    });
    expect(
      records.filter((r) => (r['header_presence'] as Record<string, boolean>)['x-debug']),
    ).toHaveLength(2);
    expect(runCli(['audit', 'verify', auditFile])).toMatchObject({ status: 0 });
  });
});

describe('gatehouse replay', () => {
  test('finds exactly the changes a known policy edit makes, grouped by caller, host, rule and reason', () => {
    const { status, report } = replayJson([editedDir, '--audit', auditFile]);
    expect(status).toBe(0);
    expect(report).toMatchObject({
      records: TOTAL,
      allowToDeny: 8,
      denyToAllow: 4,
      cannotTell: 2,
      unchanged: 8,
      policyIndependent: 0,
    });
    const groups = report.changes.map((g) => [
      g.change,
      g.caller,
      g.host,
      g.rule,
      g.reason,
      g.count,
    ]);
    expect(groups).toEqual([
      ['allow-to-deny', CHECKOUT_WEB, 'orders', 'read-orders', 'caller_not_allowed', 5],
      ['deny-to-allow', PAYMENTS_API, 'orders', 'create-order', 'caller_not_allowed', 4],
      ['allow-to-deny', CHECKOUT_BATCH, 'orders', 'read-orders', 'caller_not_allowed', 3],
    ]);
    const web = report.changes[0]!;
    expect(web.first <= web.last).toBe(true);
    expect(readFileSync(auditFile, 'utf8')).toContain(`"decision_id":"${web.example}"`);
    expect(report.cannotTellGroups).toEqual([
      {
        reason: expect.stringContaining(
          "rule tenant's when: reads request.headers['x-tenant'] values",
        ) as unknown,
        host: 'orders',
        rule: 'tenant',
        count: 2,
        example: expect.any(String) as unknown,
      },
    ]);
  });

  test('the recorded policies replay to no change; presence-only conditions are re-decided, not guessed', () => {
    const { status, report } = replayJson([
      baseDir,
      '--audit',
      auditFile,
      '--fail-on',
      'any-change',
    ]);
    expect(status).toBe(0);
    expect(report).toMatchObject({
      records: TOTAL,
      allowToDeny: 0,
      denyToAllow: 0,
      cannotTell: 2,
      unchanged: TOTAL - 2,
    });
  });

  test('--fail-on decides the exit code', () => {
    expect(
      runCli(['replay', editedDir, '--audit', auditFile, '--fail-on', 'new-denials']).status,
    ).toBe(1);
    expect(
      runCli(['replay', editedDir, '--audit', auditFile, '--fail-on', 'any-change']).status,
    ).toBe(1);
    expect(runCli(['replay', editedDir, '--audit', auditFile]).status).toBe(0);
    const gainsOnly = policyDir({
      'orders.yaml': ordersPolicy(
        `${FRONTEND_WEB}, spiffe://shop.example/ns/checkout/**`,
        `${FRONTEND_WEB}, spiffe://shop.example/ns/checkout/sa/*, spiffe://shop.example/ns/payments/sa/*`,
      ),
    });
    expect(
      runCli(['replay', gainsOnly, '--audit', auditFile, '--fail-on', 'new-denials']).status,
    ).toBe(0);
    expect(
      runCli(['replay', gainsOnly, '--audit', auditFile, '--fail-on', 'any-change']).status,
    ).toBe(1);
  });

  test('rotated pieces and stdin together read as one log', () => {
    const lines = readFileSync(auditFile, 'utf8').split('\n');
    const first = path.join(work, 'audit.log.1');
    writeFileSync(first, `${lines.slice(0, 10).join('\n')}\n`);
    const { report } = replayJson([editedDir, '--audit', first, '-'], lines.slice(10).join('\n'));
    expect(report).toMatchObject({ records: TOTAL, allowToDeny: 8, denyToAllow: 4, cannotTell: 2 });
  });

  test('--markdown writes the summary line, a table per change and the rules the edit changed', () => {
    const r = runCli(['replay', editedDir, '--audit', auditFile, '--markdown', '--base', baseDir]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(
      '**2 callers lose access, 1 gains it, 8 decisions unchanged, 2 cannot tell**',
    );
    expect(r.stdout).toContain('### Allowed before, denied now');
    expect(r.stdout).toContain(
      `| \`${CHECKOUT_WEB}\` | \`orders\` | \`read-orders\` | \`caller_not_allowed\` | 5 |`,
    );
    expect(r.stdout).toContain('### Denied before, allowed now');
    expect(r.stdout).toContain('- rules changed: `orders/create-order`, `orders/read-orders`');
    expect(r.stdout).toContain('- rules added: none');
  });

  test('without --base, the new rules behind changes and the recorded rules that are gone are named', () => {
    const renamed = policyDir({
      'orders.yaml': EDITED.replace('name: read-orders', 'name: read-order-list'),
    });
    const r = runCli(['replay', renamed, '--audit', auditFile]);
    expect(r.stdout).toContain('rules of the new set behind changes: `orders/create-order`');
    expect(r.stdout).toContain('recorded rules not in the new set: `orders/read-orders`');
  });

  test('hostile lines are counted and skipped: garbage, non-decision events, an overlong line, forged fields', () => {
    const hostile = path.join(work, 'hostile.log');
    const forged = JSON.stringify({
      msg: 'decision',
      decision_id: 'forged',
      result: 'allow',
      reason_code: 'allowed',
      caller: CHECKOUT_WEB,
      host: 'orders',
      method: 'GET',
      path: '/v1/orders',
      header_presence: { authorization: 'yes', constructor: true },
      query_keys: [1, {}],
    });
    writeFileSync(
      hostile,
      [
        'not json',
        '[1,2]',
        JSON.stringify({ msg: 'caller quarantined', event: 'quarantine' }),
        JSON.stringify({ msg: 'decision', decision_id: 7, result: 'maybe' }),
        `{"msg":"decision","pad":"${'x'.repeat(300 * 1024)}"}`,
        forged,
        '',
      ].join('\n'),
    );
    const { status, report } = replayJson([editedDir, '--audit', hostile]);
    expect(status).toBe(0);
    expect(report).toMatchObject({ records: 1, skipped: 1, invalid: 4, allowToDeny: 1 });
  });

  test('an unreadable log or invalid policies fail with exit 2 and a message', () => {
    const missing = runCli(['replay', editedDir, '--audit', path.join(work, 'nope.log')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
    const broken = policyDir({ 'orders.yaml': 'kind: ServicePolicy\n' });
    expect(runCli(['replay', broken, '--audit', auditFile]).status).toBe(2);
  });

  test('--since leaves out older records', async () => {
    const r = await runCliAsync([
      'replay',
      editedDir,
      '--audit',
      auditFile,
      '--since',
      '2999-01-01T00:00:00Z',
      '--json',
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ records: 0, older: TOTAL });
  });
});

describe('replay of a large log', () => {
  test('200k records: memory holds one group per distinct (caller, host, rule, reason), not per record', async () => {
    const lines = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .filter((l) => l.includes('"msg":"decision"'));
    const big = path.join(work, 'big.log');
    const out = createWriteStream(big);
    const copies = Math.ceil(200_000 / lines.length);
    for (let c = 0; c < copies; c++) {
      const chunk = lines
        .map((l, i) => l.replace(/"decision_id":"[^"]+"/, `"decision_id":"d-${c}-${i}"`))
        .join('\n');
      if (!out.write(`${chunk}\n`)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const set = await loadSet(editedDir);
    const report = await replay(set, { files: [big] });
    expect(report.records).toBe(copies * TOTAL);
    expect(report.allowToDeny).toBe(copies * 8);
    expect(report.changes).toHaveLength(3);
    expect(report.cannotTellGroups).toHaveLength(1);
    expect(report.recordsPerSecond).toBeGreaterThan(0);
  }, 180_000);

  test('distinct groups beyond the limit are counted, not kept', async () => {
    const template = readFileSync(auditFile, 'utf8')
      .split('\n')
      .find((l) => l.includes(`"caller":"${CHECKOUT_BATCH}"`) && l.includes('"result":"allow"'))!;
    const many = path.join(work, 'many.log');
    writeFileSync(
      many,
      Array.from({ length: 5000 }, (_, i) =>
        template.replace(CHECKOUT_BATCH, `spiffe://shop.example/ns/checkout/sa/job-${i}`),
      ).join('\n'),
    );
    const report = await replay(await loadSet(editedDir), { files: [many], maxGroups: 100 });
    expect(report.allowToDeny).toBe(5000);
    expect(report.changes).toHaveLength(100);
    expect(report.ungrouped).toBe(4900);
  });
});
