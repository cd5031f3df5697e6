import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadProtos } from '../../src/server/protos';
import { runCli, spawnServe } from '../helpers/cli';
import { checkClient } from '../helpers/grpc-client';
import { EXAMPLE_POLICIES, EXAMPLE_POLICY_ARGS } from '../helpers/policies';
import { CHECKOUT_BATCH, CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { readJsonLines } from '../helpers/server';
import { waitFor } from '../helpers/wait';

const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'gh-audit-key-'));

/** A key file as `openssl rand -hex 32 > FILE` makes it: 64 characters and a newline. */
function keyFile(dir: string, name: string, secret: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return file;
}

const SECRET = 'c0ffee5ecre7'.repeat(5) + 'abcd';
const OTHER = 'ba5eba11'.repeat(8);

describe('gatehouse serve --audit-key', () => {
  test('records are keyed; audit verify needs the right --key', async () => {
    const dir = tmp();
    const audit = path.join(dir, 'audit.log');
    const key = keyFile(dir, 'audit.key', SECRET);
    const server = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--audit-log',
      audit,
      '--audit-key',
      key,
      '--log-level',
      'trace',
    ]);
    const client = checkClient(server.port);
    let policyInfo: string;
    try {
      expect(
        (await client.check(envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' }))).status
          ?.code ?? 0,
      ).toBe(0);
      expect(
        (await client.check(envoyCheckRequest({ principal: CHECKOUT_BATCH }))).status?.code,
      ).not.toBe(0);
      policyInfo = await (await fetch(`http://127.0.0.1:${server.adminPort}/v1/policy`)).text();
    } finally {
      client.close();
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(0);
    const records = readJsonLines(audit);
    expect(records).toHaveLength(2);
    for (const r of records) expect(r['mac']).toBe('hmac-sha256');
    // The key is in no record, log line or admin answer.
    for (const text of [readFileSync(audit, 'utf8'), server.stderr(), server.stdout(), policyInfo])
      expect(text).not.toContain(SECRET);

    const keyed = runCli(['audit', 'verify', audit, '--key', key]);
    expect(keyed.status).toBe(0);
    expect(keyed.stdout).toContain('ok: 2 record(s) in 1 chain(s), every HMAC matches the key');

    const keyless = runCli(['audit', 'verify', audit]);
    expect(keyless.status).toBe(1);
    expect(keyless.stdout).toContain(`${audit}:1: record is keyed (hmac-sha256): a key is needed`);

    const wrong = runCli(['audit', 'verify', audit, '--key', keyFile(dir, 'other.key', OTHER)]);
    expect(wrong.status).toBe(1);
    expect(wrong.stdout).toContain(`${audit}:1: record altered or wrong key`);
    expect(wrong.stdout + wrong.stderr).not.toContain(OTHER);
  });

  test('GATEHOUSE_AUDIT_KEY reaches every worker', async () => {
    const dir = tmp();
    const key = keyFile(dir, 'audit.key', SECRET);
    const server = await spawnServe(
      [...EXAMPLE_POLICY_ARGS, '--audit-log', path.join(dir, 'audit.log'), '--workers', '2'],
      { GATEHOUSE_AUDIT_KEY: key },
    );
    try {
      // spawnServe returns once the first worker serves; wait for both.
      await waitFor(
        async () => (await fetch(`http://127.0.0.1:${server.adminPort}/readyz`)).status === 200,
        'both workers ready',
      );
      // Clients with their own channels spread over the workers.
      const { AuthorizationClient } = loadProtos();
      const many = Array.from(
        { length: 6 },
        () =>
          new AuthorizationClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
            'grpc.use_local_subchannel_pool': 1,
          }) as unknown as grpc.Client & { Check: Function },
      );
      await Promise.all(
        many.flatMap((c) =>
          Array.from(
            { length: 5 },
            () =>
              new Promise((resolve, reject) =>
                c.Check(
                  envoyCheckRequest({
                    principal: CHECKOUT_WEB,
                    method: 'GET',
                    path: '/v1/orders/1',
                  }),
                  (e: Error | null) => (e ? reject(e) : resolve(null)),
                ),
              ),
          ),
        ),
      );
      many.forEach((c) => c.close());
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(0);
    const files = ['audit.w1.log', 'audit.w2.log'].map((f) => path.join(dir, f));
    const counts = files.map((f) => readJsonLines(f).length);
    expect(counts[0]! + counts[1]!).toBe(30);
    expect(counts.every((c) => c > 0)).toBe(true);
    for (const f of files) {
      expect(readJsonLines(f).every((r) => r['mac'] === 'hmac-sha256')).toBe(true);
      expect(runCli(['audit', 'verify', f, '--key', key]).status).toBe(0);
      expect(runCli(['audit', 'verify', f]).status).toBe(1);
    }
  });

  test('a key file under 32 bytes is refused before serving, without printing it', () => {
    const dir = tmp();
    const short = keyFile(dir, 'short.key', 'not-long-enough-secret');
    const serve = runCli([
      'serve',
      '--policies',
      EXAMPLE_POLICIES,
      '--grpc-port',
      '0',
      '--admin-port',
      '0',
      '--audit-log',
      '/dev/null',
      '--audit-key',
      short,
    ]);
    expect(serve.status).toBe(1);
    expect(serve.stderr).toContain(
      `gatehouse: refusing to start: --audit-key: audit key ${short} is 22 byte(s); it needs at least 32`,
    );
    expect(serve.stderr + serve.stdout).not.toContain('not-long-enough-secret');
    expect(serve.stderr).not.toContain('serving');

    const missing = runCli([
      'serve',
      '--policies',
      EXAMPLE_POLICIES,
      '--audit-key',
      path.join(dir, 'nope'),
    ]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`audit key ${path.join(dir, 'nope')} does not exist`);
    expect(missing.stderr).not.toContain('ENOENT');

    const verify = runCli(['audit', 'verify', '/dev/null', '--key', short]);
    expect(verify.status).toBe(1);
    expect(verify.stderr).toContain('--key: audit key');
  });
});
