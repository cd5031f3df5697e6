import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { addServeOptions } from '../../src/cli/serve-options';
import { CLI, ROOT } from '../helpers/cli';
import { checkClient } from '../helpers/grpc-client';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { waitFor } from '../helpers/wait';

/**
 * A cluster primary standing in for the supervisor: forks `serve` as a worker whose own argv
 * names a policy directory that does not exist, and sends it `message` as its first message.
 */
const HARNESS = `
const cluster = require('node:cluster');
cluster.setupPrimary({
  exec: process.argv[2],
  args: ['serve', '--policies', '/nonexistent/policies', '--trust-domain', 'argv.example'],
});
const worker = cluster.fork();
worker.send(JSON.parse(process.argv[3]));
worker.on('message', (m) => process.stdout.write(JSON.stringify(m) + '\\n'));
worker.on('exit', (code) => process.exit(code === null ? 2 : code));
process.on('SIGTERM', () => worker.process.kill('SIGTERM'));
`;

function parsedFlags(args: string[]): Record<string, unknown> {
  const command = addServeOptions(new Command()).exitOverride();
  command.parse(args, { from: 'user' });
  return command.opts();
}

function startHarness(message: unknown) {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-worker-'));
  const harness = path.join(dir, 'harness.js');
  writeFileSync(harness, HARNESS);
  const child = spawn(process.execPath, [harness, CLI, JSON.stringify(message)], { cwd: ROOT });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { dir, child, exited, stdout: () => stdout, stderr: () => stderr };
}

test('a worker serves the flags, slot and policy directory the primary sends, not its own argv', async () => {
  const auditDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-worker-audit-'));
  const flags = parsedFlags([
    '--grpc-port',
    '0',
    '--admin-port',
    '0',
    '--listen-address',
    '127.0.0.1',
    '--trust-domain',
    'shop.example',
    '--audit-log',
    path.join(auditDir, 'audit.log'),
  ]);
  const h = startHarness({
    type: 'gatehouse:config',
    slot: 3,
    policiesDir: EXAMPLE_POLICIES,
    flags,
  });
  try {
    await waitFor(
      () => /"gatehouse:status".*"slot":3.*"ready":true/.test(h.stdout()),
      `worker slot 3 ready:\n${h.stderr()}`,
      15_000,
    );
    const port = Number(/"grpcPort":(\d+)/.exec(h.stderr())?.[1]);
    const client = checkClient(port);
    try {
      const r = await client.check(
        envoyCheckRequest({ principal: CHECKOUT_WEB, host: 'orders', path: '/v1/orders/1' }),
      );
      expect(r.status).toBeDefined();
    } finally {
      client.close();
    }
    // The slot names the audit file; the trust domain is the one sent, not argv's.
    const audit = path.join(auditDir, 'audit.w3.log');
    await waitFor(
      () => existsSync(audit) && readFileSync(audit, 'utf8').includes(CHECKOUT_WEB),
      'audit record',
    );
    expect(readFileSync(audit, 'utf8')).not.toContain('is not trusted');
  } finally {
    h.child.kill('SIGTERM');
    await h.exited;
  }
});

test.each([
  [
    'a flag out of range',
    { slot: 3, flags: { grpcPort: 70000 } },
    'worker 3: configuration from the primary: --grpc-port must be a port number from 0 to 65535',
  ],
  [
    'a key that is no flag',
    { slot: 2, flags: { grpcPort: 0, exec: 'rm -rf /' } },
    'worker 2: configuration from the primary: exec is not a serve flag',
  ],
  [
    'a first message that is no configuration',
    { type: 'gatehouse:reload' },
    'worker: the first message from the primary is not its configuration',
  ],
])('a worker refuses to start on %s', async (_what, message, error) => {
  const base = parsedFlags(['--grpc-port', '0', '--listen-address', '127.0.0.1']);
  const m = message as { slot?: number; flags?: Record<string, unknown>; type?: string };
  const h = startHarness(
    m.type
      ? m
      : {
          type: 'gatehouse:config',
          slot: m.slot,
          policiesDir: EXAMPLE_POLICIES,
          flags: { ...base, ...m.flags },
        },
  );
  const timer = setTimeout(() => h.child.kill('SIGKILL'), 15_000);
  const code = await h.exited;
  clearTimeout(timer);
  expect(code).toBe(1);
  expect(h.stderr()).toContain(`gatehouse: ${error}`);
  expect(h.stdout()).not.toContain('gatehouse:status');
});
