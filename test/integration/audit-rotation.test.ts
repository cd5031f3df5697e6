import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  truncateSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { AdminServer } from '../../src/admin/admin-server';
import { runCli, spawnServe, type ServeProcess } from '../helpers/cli';
import { checkClient, type CheckClient } from '../helpers/grpc-client';
import { policyDir, servicePolicy } from '../helpers/policies';
import { envoyCheckRequest } from '../helpers/requests';
import { waitFor } from '../helpers/wait';

/**
 * logrotate against a real server: the audit file is renamed (or copied and truncated), the
 * server reopens it on SIGUSR1 or the admin call, and the pieces verify as one chain.
 */
const CALLER = 'spiffe://shop.example/ns/a/sa/a';
const dir = policyDir({
  'p.yaml': servicePolicy('rot', ['rot'], `    - name: r\n      allow: [${CALLER}]`),
});

function lineCount(file: string): number {
  return existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '').length
    : 0;
}

describe('audit log rotation', () => {
  let server: ServeProcess;
  let client: CheckClient;
  let audit: string;

  beforeAll(async () => {
    audit = path.join(mkdtempSync(path.join(tmpdir(), 'gh-rot-')), 'audit.log');
    server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--no-watch',
      '--audit-log',
      audit,
    ]);
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client.close();
    if (server.child.exitCode === null) server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  const checks = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++)
      await client.check(envoyCheckRequest({ principal: CALLER, host: 'rot', path: '/' }));
  };

  test('rename + SIGUSR1, then copytruncate + admin call: every piece verifies in order, and alone from its anchor', async () => {
    await checks(3);
    await waitFor(() => lineCount(audit) === 3, 'three records');
    // logrotate's default: rename, then tell the writer (postrotate kill -USR1).
    renameSync(audit, `${audit}.2`);
    server.child.kill('SIGUSR1');
    await waitFor(() => server.stderr().includes('audit log reopened'), 'the reopen log line');
    await checks(2);
    await waitFor(() => lineCount(audit) === 2, 'two records in the new file');
    expect(lineCount(`${audit}.2`)).toBe(3);

    // copytruncate: the file is copied and emptied in place; the admin call is harmless then.
    copyFileSync(audit, `${audit}.1`);
    truncateSync(audit, 0);
    const res = await fetch(`http://127.0.0.1:${server.adminPort}/v1/audit/reopen`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    expect([res.status, await res.json()]).toEqual([200, { reopened: 1 }]);
    await checks(1);
    await waitFor(() => lineCount(audit) === 1, 'one record after the truncation');

    // Alone, a later piece names its problem and the way out.
    const alone = runCli(['audit', 'verify', audit]);
    expect(alone.status).toBe(1);
    expect(alone.stdout).toMatch(/starts at seq 5, not 0: .*--from-seq 4 --from-hash/);

    // Together, oldest first.
    const all = runCli(['audit', 'verify', `${audit}.2`, `${audit}.1`, audit]);
    expect(all.stdout).toMatch(/^ok: 6 record\(s\) in 1 chain\(s\), every hash intact$/m);
    expect(all.status).toBe(0);
    const wrongOrder = runCli(['audit', 'verify', `${audit}.1`, `${audit}.2`, audit]);
    expect(wrongOrder.status).toBe(1);
    expect(wrongOrder.stdout).toContain(`${audit}.1:1: chain`);

    // Alone from the anchor the previous verify printed.
    const first = runCli(['audit', 'verify', `${audit}.2`]);
    const anchor = /ends at (--from-seq \d+ --from-hash [0-9a-f]{64})/
      .exec(first.stdout)![1]!
      .split(' ');
    expect(anchor.slice(0, 2)).toEqual(['--from-seq', '2']);
    const next = runCli(['audit', 'verify', `${audit}.1`, ...anchor]);
    expect(next.stdout).toMatch(/^ok: 2 record\(s\)/m);
    expect(next.status).toBe(0);
    // The same anchor does not fit a piece further on.
    expect(runCli(['audit', 'verify', audit, ...anchor]).status).toBe(1);
    // --mid-chain accepts the start and says it was not checked.
    const mid = runCli(['audit', 'verify', audit, '--mid-chain']);
    expect(mid.status).toBe(0);
    expect(mid.stdout).toMatch(/unchecked start: chain [0-9a-f]{16} begins at seq 5/);
  }, 30_000);

  test('flags are checked: --from-seq needs --from-hash, a hash is 64 hex digits', () => {
    expect(runCli(['audit', 'verify', audit, '--from-seq', '3']).stderr).toContain(
      '--from-seq and --from-hash go together',
    );
    expect(
      runCli(['audit', 'verify', audit, '--from-seq', '3', '--from-hash', 'abc']).stderr,
    ).toContain('--from-hash must be a record hash');
  });

  test('the reopen call is a change: a wrong admin token is refused and reopens nothing', async () => {
    let reopened = 0;
    const admin = new AdminServer(
      {
        readiness: () => ({ checks: {}, failing: [] }),
        metrics: async () => ({ contentType: 'text/plain', body: '' }),
        policy: () => ({}),
        audit: { reopen: async () => ({ reopened: ++reopened }) },
      },
      pino({ level: 'silent' }),
      { token: Buffer.from('the-right-admin-token') },
    );
    const port = await admin.listen('127.0.0.1', 0);
    try {
      const wrong = await fetch(`http://127.0.0.1:${port}/v1/audit/reopen`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer not-the-admin-token',
          'content-type': 'application/json',
        },
      });
      expect(wrong.status).toBe(403);
      expect(reopened).toBe(0);
      const right = await fetch(`http://127.0.0.1:${port}/v1/audit/reopen`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer the-right-admin-token',
          'content-type': 'application/json',
        },
      });
      expect(right.status).toBe(200);
      expect(reopened).toBe(1);
    } finally {
      await admin.close();
    }
  });
});
