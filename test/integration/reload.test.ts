import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DecisionEngine } from '../../src/pipeline/engine';
import type { Decision } from '../../src/pipeline/decision';
import type { PolicySet } from '../../src/policy/types';
import type { BucketStore, LimitResult } from '../../src/ratelimit/types';
import { spawnServe, type ServeProcess } from '../helpers/cli';
import { loadSet } from '../helpers/engine';
import { checkClient, headerMap } from '../helpers/grpc-client';
import { policyDir, servicePolicy } from '../helpers/policies';
import { envoyCheckRequest } from '../helpers/requests';
import { readJsonLines } from '../helpers/server';
import { waitFor } from '../helpers/wait';

const policyFor = (caller: string, extra = ''): string =>
  servicePolicy(
    'svc',
    ['svc'],
    `    - name: r
      allow: [spiffe://shop.example/${caller}]${extra}`,
  );

async function policyInfo(server: ServeProcess): Promise<Record<string, unknown>> {
  return (await fetch(`http://127.0.0.1:${server.adminPort}/v1/policy`)).json() as Promise<
    Record<string, unknown>
  >;
}

const git = (cwd: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example', ...args], {
    cwd,
    encoding: 'utf8',
  }).trim();

describe('hot reload', () => {
  test('a file change reloads without a signal; the version carries the git commit and a dirty flag', async () => {
    const dir = policyDir({ 'svc.yaml': policyFor('a') });
    git(dir, 'init', '-q');
    git(dir, 'add', '.');
    git(dir, 'commit', '-qm', 'policies');
    const head = git(dir, 'rev-parse', 'HEAD');
    const audit = path.join(dir, '..', `${path.basename(dir)}-audit.log`);
    const server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--audit-log',
      audit,
    ]);
    const client = checkClient(server.port);
    try {
      expect(await policyInfo(server)).toMatchObject({ git: { commit: head, dirty: false } });
      const call = async (caller: string) =>
        (
          await client.check(
            envoyCheckRequest({
              principal: `spiffe://shop.example/${caller}`,
              host: 'svc',
              path: '/',
            }),
          )
        ).status?.code ?? 0;
      expect(await call('b')).toBe(7);
      writeFileSync(path.join(dir, 'svc.yaml'), policyFor('b'));
      await waitFor(async () => (await call('b')) === 0, 'reload on change');
      expect(await policyInfo(server)).toMatchObject({
        git: { commit: head, dirty: true },
        history: [{ result: 'reloaded' }, { result: 'loaded' }],
      });
      const records = readJsonLines(audit);
      expect(records[0]).toMatchObject({ policy_commit: head.slice(0, 12) });
      expect(records[records.length - 1]).toMatchObject({
        policy_commit: `${head.slice(0, 12)}-dirty`,
        result: 'allow',
      });
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  test('Kubernetes ConfigMap layout: symlinked files and an atomic ..data swap', async () => {
    const dir = policyDir({});
    mkdirSync(path.join(dir, '..v1'));
    mkdirSync(path.join(dir, '..v2'));
    writeFileSync(path.join(dir, '..v1', 'svc.yaml'), policyFor('a'));
    writeFileSync(path.join(dir, '..v2', 'svc.yaml'), policyFor('b'));
    symlinkSync('..v1', path.join(dir, '..data'));
    symlinkSync('..data/svc.yaml', path.join(dir, 'svc.yaml'));
    const server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--audit-log',
      '/dev/null',
    ]);
    const client = checkClient(server.port);
    try {
      const call = async (caller: string) =>
        (
          await client.check(
            envoyCheckRequest({
              principal: `spiffe://shop.example/${caller}`,
              host: 'svc',
              path: '/',
            }),
          )
        ).status?.code ?? 0;
      expect(await call('a')).toBe(0);
      symlinkSync('..v2', path.join(dir, '..data_tmp'));
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data')); // what the kubelet does
      await waitFor(async () => (await call('b')) === 0, 'reload after the ..data swap');
      expect(await call('a')).toBe(7);
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  test('a reload storm with broken versions in it, while checks run: every check answered, a broken version never served', async () => {
    const dir = policyDir({ 'svc.yaml': policyFor('v0') });
    const server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--audit-log',
      '/dev/null',
      '--workers',
      '2',
    ]);
    const clients = Array.from({ length: 3 }, () => checkClient(server.port));
    let answered = 0;
    let errors = 0;
    let storming = true;
    const versions = new Set<string>();
    const load = Promise.all(
      clients.map(async (client, k) => {
        for (let i = 0; storming && i < 50_000; i++) {
          try {
            const r = await client.check(
              envoyCheckRequest({
                principal: `spiffe://shop.example/v${(i + k) % 41}`,
                host: 'svc',
                path: '/',
              }),
            );
            answered++;
            const policy = headerMap(r.okResponse?.headers)['x-gatehouse-policy'];
            if (policy) versions.add(policy);
          } catch {
            errors++;
          }
        }
      }),
    );
    const served = async (): Promise<unknown> => (await policyInfo(server))['version'];
    const versionOf = async (n: number): Promise<string> =>
      (await loadSet(policyDir({ 'svc.yaml': policyFor(`v${n}`) }))).version;
    try {
      // Bursts of writes (each burst coalesces into one reload), with a pause after every tenth.
      for (let n = 1; n <= 40; n++) {
        writeFileSync(
          path.join(dir, 'svc.yaml'),
          n === 20
            ? 'apiVersion: [broken'
            : n === 30
              ? 'kind: ServicePolicy\nspec: {}\n'
              : policyFor(`v${n}`),
        );
        await new Promise((r) => setTimeout(r, 10));
        if (n % 10 === 0) {
          if (n === 20 || n === 30) {
            // A broken burst end: rejected, and a good version written before it keeps serving. Usually
            // the burst coalesces into one reload and that is v10; on a loaded machine the debounce can
            // fire mid-burst, so any earlier good version of this storm is the right answer.
            await waitFor(
              async () =>
                server.stderr().split('policy reload rejected').length - 1 >= (n === 20 ? 1 : 2),
              `rejection ${n}`,
            );
            const good = await Promise.all(
              Array.from({ length: n - 10 }, (_, k) => 10 + k)
                .filter((v) => v !== 20)
                .map(versionOf),
            );
            expect(good).toContain(await served());
          } else {
            const want = await versionOf(n);
            await waitFor(async () => (await served()) === want, `version v${n}`);
          }
        }
      }
      storming = false;
      await load;
      expect(errors).toBe(0);
      expect(answered).toBeGreaterThan(100);
      expect(versions.size).toBeGreaterThan(1); // checks really ran across reloads
      const info = await policyInfo(server);
      const last = await versionOf(40);
      expect(info['version']).toBe(last);
      await waitFor(
        async () =>
          ((await policyInfo(server))['workers'] as { version: string }[]).every(
            (w) => w.version === last,
          ),
        'workers on v40',
      );
      // The primary keeps the reload history too: the two rejections are in it, newest first.
      const history = info['history'] as { result: string; version: string; errors?: string[] }[];
      expect(history[0]).toMatchObject({ result: 'reloaded', version: last });
      expect(history.filter((h) => h.result === 'rejected')).toHaveLength(2);
      expect(history.find((h) => h.result === 'rejected')!.errors!.length).toBeGreaterThan(0);
    } finally {
      storming = false;
      clients.forEach((c) => c.close());
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    }
  });

  test('a check in flight finishes on the version it started with', async () => {
    const v1 = await loadSet(
      policyDir({
        'svc.yaml': policyFor('a', '\n      rateLimit: { capacity: 5, refillPerSecond: 1 }'),
      }),
    );
    const v2 = await loadSet(
      policyDir({
        'svc.yaml': policyFor('b', '\n      rateLimit: { capacity: 5, refillPerSecond: 1 }'),
      }),
    );
    let current: PolicySet = v1;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slowStore: BucketStore = {
      kind: 'slow',
      take: async (): Promise<LimitResult> => {
        await gate;
        return { allowed: true, limit: 5, remaining: 4, resetSeconds: 1, retryAfterSeconds: 0 };
      },
      close: async () => undefined,
    };
    const engine = new DecisionEngine({
      policies: () => current,
      identity: { trustDomains: new Set(['shop.example']), trustXfcc: false },
      store: slowStore,
      sink: { record: () => undefined },
    });
    const inFlight = engine.decide(
      envoyCheckRequest({ principal: 'spiffe://shop.example/a', host: 'svc', path: '/' }),
    );
    current = v2; // a reload lands while the check waits on the limiter
    release();
    const decision: Decision = await inFlight;
    expect(decision).toMatchObject({ allowed: true, policyVersion: v1.version });
    expect(decision.policy?.label).toBe(`svc@${v1.version}`);
  });
});
