import { CompactSign, importPKCS8 } from 'jose';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildBundle, BUNDLE_TYPE } from '../../src/bundle/bundle';
import { BundlePoller } from '../../src/bundle/poller';
import { memoryLogger } from '../helpers/server';
import { runCli, spawnServe, type ServeProcess } from '../helpers/cli';
import { checkClient } from '../helpers/grpc-client';
import { bundlePolicySet as policySet, policyDir } from '../helpers/policies';
import { envoyCheckRequest } from '../helpers/requests';
import { waitFor } from '../helpers/wait';

const tmp = mkdtempSync(path.join(tmpdir(), 'gh-bundle-'));
function keyPair(type: 'ed25519' | 'ec', name: string): { priv: string; pub: string } {
  const { privateKey, publicKey } =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const priv = path.join(tmp, `${name}.key`);
  const pub = path.join(tmp, `${name}.pub`);
  writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
  return { priv, pub };
}
const operator = keyPair('ed25519', 'operator');
const stranger = keyPair('ed25519', 'stranger');
const ecdsa = keyPair('ec', 'ecdsa');

async function bundleFor(caller: string, revision: number, key = operator.priv): Promise<string> {
  return (await buildBundle(policySet(caller), readFileSync(key, 'utf8'), revision)).jws;
}

describe('gatehouse bundle build', () => {
  test('packs a validated, tested set signed with Ed25519 or ECDSA', () => {
    const out = path.join(tmp, 'built.jws');
    const r = runCli([
      'bundle',
      'build',
      policySet('a'),
      '-o',
      out,
      '--key',
      operator.priv,
      '--revision',
      '7',
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/revision 7, version [0-9a-f]{16}, 2 files, 1 policy tests passed/);
    const header = JSON.parse(
      Buffer.from(readFileSync(out, 'utf8').split('.')[0]!, 'base64url').toString(),
    );
    expect(header).toEqual({ alg: 'EdDSA', typ: BUNDLE_TYPE });
    expect(runCli(['bundle', 'build', policySet('a'), '-o', out, '--key', ecdsa.priv]).status).toBe(
      0,
    );
    expect(
      JSON.parse(Buffer.from(readFileSync(out, 'utf8').split('.')[0]!, 'base64url').toString()).alg,
    ).toBe('ES256');
  });

  test('refuses a set whose tests fail, or whose policies are invalid', () => {
    const failing = runCli([
      'bundle',
      'build',
      policySet('a', '{ deny: 403 }'),
      '-o',
      path.join(tmp, 'x.jws'),
      '--key',
      operator.priv,
    ]);
    expect(failing.status).toBe(1);
    expect(failing.stderr).toContain('1 policy test(s) fail: svc › caller admitted');
    const invalid = runCli([
      'bundle',
      'build',
      policyDir({ 'svc.yaml': 'kind: [' }),
      '-o',
      path.join(tmp, 'x.jws'),
      '--key',
      operator.priv,
    ]);
    expect(invalid.status).toBe(1);
    expect(invalid.stderr).toContain('policies are invalid');
  });
});

describe('keys of the wrong kind are named in words', () => {
  const noRaw = (text: string): void => {
    expect(text).not.toMatch(/DECODER|routines|ENOENT|:0:0/);
  };

  test('bundle build with a public key, a missing key, a certificate-less text or an RSA key', () => {
    const dir = policySet('a');
    const out = path.join(tmp, 'wrong.jws');
    const pub = runCli(['bundle', 'build', dir, '-o', out, '--key', operator.pub]);
    expect(pub.status).toBe(1);
    expect(pub.stderr).toBe(
      `gatehouse: --key ${operator.pub} is a public key; it must be a private key (PKCS#8 PEM, -----BEGIN PRIVATE KEY-----), the one you keep secret and sign with\n`,
    );
    const missing = runCli([
      'bundle',
      'build',
      dir,
      '-o',
      out,
      '--key',
      path.join(tmp, 'absent.key'),
    ]);
    expect(missing.stderr).toBe(
      `gatehouse: --key ${path.join(tmp, 'absent.key')} does not exist\n`,
    );
    const text = path.join(tmp, 'not-pem.key');
    writeFileSync(text, 'hello');
    expect(runCli(['bundle', 'build', dir, '-o', out, '--key', text]).stderr).toMatch(
      /is not a PEM file; it must be a private key/,
    );
    const rsa = path.join(tmp, 'rsa.key');
    writeFileSync(
      rsa,
      generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      }),
    );
    expect(runCli(['bundle', 'build', dir, '-o', out, '--key', rsa]).stderr).toMatch(
      /bundle keys must be Ed25519 or ECDSA P-256\/P-384/,
    );
    for (const r of [pub, missing]) noRaw(r.stderr);
  });

  test('an EC key in SEC1 form (openssl ecparam -genkey) signs too', () => {
    const sec1 = path.join(tmp, 'sec1.key');
    writeFileSync(
      sec1,
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
        type: 'sec1',
        format: 'pem',
      }),
    );
    const r = runCli([
      'bundle',
      'build',
      policySet('a'),
      '-o',
      path.join(tmp, 'sec1.jws'),
      '--key',
      sec1,
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('serve --bundle-key with the private key, or a missing one, refuses to start in words', () => {
    const bundle = path.join(tmp, 'for-key.jws');
    writeFileSync(bundle, 'x');
    const priv = runCli([
      'serve',
      '--bundle',
      bundle,
      '--bundle-key',
      operator.priv,
      '--grpc-port',
      '0',
      '--admin-port',
      '0',
      '--listen-address',
      '127.0.0.1',
    ]);
    expect(priv.status).toBe(1);
    expect(priv.stderr).toContain(
      `--bundle-key ${operator.priv} is a private key; it must be a public key`,
    );
    const missing = runCli([
      'serve',
      '--bundle',
      path.join(tmp, 'absent.jws'),
      '--bundle-key',
      operator.pub,
      '--grpc-port',
      '0',
      '--admin-port',
      '0',
      '--listen-address',
      '127.0.0.1',
    ]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('the bundle file does not exist');
    for (const r of [priv, missing]) noRaw(r.stderr);
  });
});

describe('gatehouse serve --bundle FILE', () => {
  const file = path.join(tmp, 'served.jws');
  let server: ServeProcess;
  const decide = async (caller: string): Promise<number> => {
    const client = checkClient(server.port);
    try {
      return (
        (
          await client.check(
            envoyCheckRequest({
              principal: `spiffe://shop.example/${caller}`,
              host: 'svc',
              path: '/',
            }),
          )
        ).status?.code ?? 0
      );
    } finally {
      client.close();
    }
  };
  const served = async (): Promise<Record<string, unknown>> =>
    (await fetch(`http://127.0.0.1:${server.adminPort}/v1/policy`)).json() as Promise<
      Record<string, unknown>
    >;

  beforeAll(async () => {
    writeFileSync(file, await bundleFor('v1', 100));
    server = await spawnServe([
      '--bundle',
      file,
      '--bundle-key',
      operator.pub,
      '--bundle-poll',
      '1',
      '--trust-domain',
      'shop.example',
      '--audit-log',
      '/dev/null',
    ]);
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  test('serves the bundle; a newer signed revision is activated', async () => {
    expect(await decide('v1')).toBe(0);
    writeFileSync(file, await bundleFor('v2', 200));
    await waitFor(async () => (await decide('v2')) === 0, 'revision 200');
    expect(await decide('v1')).toBe(7);
    expect(String((await served())['directory'])).toContain('gatehouse-bundle-200-');
  });

  test.each([
    [
      'tampered',
      async () => {
        const [h, p, s] = (await bundleFor('evil', 300)).split('.');
        const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
        payload.files['svc.yaml'] = payload.files['svc.yaml'].replace(
          'spiffe://shop.example/evil',
          'spiffe://shop.example/mallory',
        );
        return [h, Buffer.from(JSON.stringify(payload)).toString('base64url'), s].join('.');
      },
      'signature does not verify',
    ],
    [
      'unsigned (alg none)',
      async () => {
        const good = (await bundleFor('evil', 300)).split('.');
        return [
          Buffer.from(JSON.stringify({ alg: 'none', typ: BUNDLE_TYPE })).toString('base64url'),
          good[1],
          '',
        ].join('.');
      },
      'algorithm none is not accepted',
    ],
    [
      'signed by another key',
      () => bundleFor('evil', 300, stranger.priv),
      'signature does not verify',
    ],
    [
      'plain YAML instead of a bundle',
      async () => 'apiVersion: gatehouse/v1\nkind: ServicePolicy\n',
      'not a signed bundle',
    ],
    ['older revision', () => bundleFor('evil', 150), 'is not newer than the active 200'],
    [
      'signed but its own tests fail',
      async () => {
        const payload = JSON.parse(
          Buffer.from((await bundleFor('evil', 300)).split('.')[1]!, 'base64url').toString(),
        );
        payload.files['svc.test.yaml'] = payload.files['svc.test.yaml'].replace(
          'expect: allow',
          'expect: { deny: 403 }',
        );
        const key = await importPKCS8(readFileSync(operator.priv, 'utf8'), 'EdDSA');
        return new CompactSign(Buffer.from(JSON.stringify(payload)))
          .setProtectedHeader({ alg: 'EdDSA', typ: BUNDLE_TYPE })
          .sign(key);
      },
      'policy tests do not pass',
    ],
  ])('never activates a bundle that is %s', async (_name, make, logged) => {
    // Each case's refusal differs from the one before it (a repeated refusal is logged once).
    const before = server.stderr().split(logged).length;
    writeFileSync(file, await make());
    await waitFor(() => server.stderr().split(logged).length > before, `log "${logged}"`);
    expect(await decide('evil')).toBe(7);
    expect(await decide('mallory')).toBe(7);
    expect(await decide('v2')).toBe(0); // the active bundle keeps serving
  });
});

test('serve --bundle URL polls with ETags and activates new revisions', async () => {
  let body = await bundleFor('u1', 1);
  let etag = '"r1"';
  const seen: { status: number; conditional: boolean }[] = [];
  const origin = http.createServer((req, res) => {
    const conditional = req.headers['if-none-match'] === etag;
    seen.push({ status: conditional ? 304 : 200, conditional });
    if (conditional) {
      res.writeHead(304, { etag });
      res.end();
    } else {
      res.writeHead(200, { etag, 'content-type': 'application/jose' });
      res.end(body);
    }
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(origin.address() as { port: number }).port}/bundle`;
  const server = await spawnServe([
    '--bundle',
    url,
    '--bundle-key',
    operator.pub,
    '--bundle-poll',
    '1',
    '--trust-domain',
    'shop.example',
    '--audit-log',
    '/dev/null',
    '--workers',
    '2',
  ]);
  const client = checkClient(server.port);
  const decide = async (caller: string) =>
    (
      await client.check(
        envoyCheckRequest({ principal: `spiffe://shop.example/${caller}`, host: 'svc', path: '/' }),
      )
    ).status?.code ?? 0;
  try {
    expect(await decide('u1')).toBe(0);
    await waitFor(
      () => seen.filter((s) => s.status === 304).length >= 2,
      'conditional polls answered 304',
    );
    body = await bundleFor('u2', 2);
    etag = '"r2"';
    await waitFor(async () => (await decide('u2')) === 0, 'revision 2 on every worker');
    expect(seen[0]).toEqual({ status: 200, conditional: false });
    expect(seen.filter((s) => s.status === 200)).toHaveLength(2);
  } finally {
    client.close();
    server.child.kill('SIGTERM');
    await server.exited;
    origin.close();
  }
});

test('--bundle-state: a restart never goes back to an older signed revision, nor to other contents under the same one', async () => {
  const dir = mkdtempSync(path.join(tmp, 'state-'));
  const file = path.join(dir, 'policies.jws');
  const state = path.join(dir, 'bundle-state.json');
  const { log } = memoryLogger();
  const pollers: BundlePoller[] = [];
  const start = async (jws: string): Promise<number> => {
    writeFileSync(file, jws);
    const poller = new BundlePoller(file, readFileSync(operator.pub, 'utf8'), log, state);
    pollers.push(poller);
    return (await poller.initial()).payload.revision;
  };
  expect(await start(await bundleFor('ns/a/sa/one', 2))).toBe(2);
  expect(JSON.parse(readFileSync(state, 'utf8'))).toMatchObject({ revision: 2 });
  // The replayed older bundle is correctly signed: only the state file knows better.
  await expect(start(await bundleFor('ns/a/sa/one', 1))).rejects.toThrow(
    'older than revision 2 already activated here',
  );
  await expect(start(await bundleFor('ns/a/sa/other', 2))).rejects.toThrow('different contents');
  expect(await start(await bundleFor('ns/a/sa/one', 2))).toBe(2); // the same bundle again: a plain restart
  expect(await start(await bundleFor('ns/a/sa/one', 3))).toBe(3);
  expect(JSON.parse(readFileSync(state, 'utf8'))).toMatchObject({ revision: 3 });
  writeFileSync(state, '{"revision": "three"');
  await expect(start(await bundleFor('ns/a/sa/one', 4))).rejects.toThrow('is not valid');
  // Without a state file, protection is per process (and the poller refuses older revisions).
  writeFileSync(file, await bundleFor('ns/a/sa/one', 1));
  const stateless = new BundlePoller(file, readFileSync(operator.pub, 'utf8'), log);
  pollers.push(stateless);
  expect((await stateless.initial()).payload.revision).toBe(1);
  await Promise.all(pollers.map((p) => p.removeFiles())); // what the tests unpack, they remove
});

test('serve --bundle-state refuses to start on a bundle older than one it activated before', async () => {
  const file = path.join(tmp, 'old.jws');
  const state = path.join(tmp, 'cli-state.json');
  writeFileSync(file, await bundleFor('ns/a/sa/one', 1));
  writeFileSync(state, JSON.stringify({ revision: 5, version: 'x' }));
  const r = runCli([
    'serve',
    '--bundle',
    file,
    '--bundle-key',
    operator.pub,
    '--bundle-state',
    state,
    '--grpc-port',
    '0',
    '--admin-port',
    '0',
    '--workers',
    '1',
  ]);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('bundle revision 1 is older than revision 5 already activated here');
});

test('serve refuses to start when the first bundle does not verify', () => {
  const file = path.join(tmp, 'bad.jws');
  writeFileSync(file, 'not a bundle');
  const r = runCli([
    'serve',
    '--bundle',
    file,
    '--bundle-key',
    operator.pub,
    '--grpc-port',
    '0',
    '--admin-port',
    '0',
    '--workers',
    '1',
  ]);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('refusing to start: bundle');
  expect(r.stderr).toContain('not a signed bundle');
  expect(runCli(['serve', '--bundle', file, '--grpc-port', '0']).stderr).toContain(
    '--bundle needs --bundle-key',
  );
});

describe('a bundle built from a git checkout keeps its commit', () => {
  test('/v1/policy shows the commit and audit records carry policy_commit', async () => {
    const dir = policySet('git');
    const git = (...args: string[]): string =>
      execFileSync(
        'git',
        [
          '-c',
          'user.name=ci',
          '-c',
          'user.email=ci@example.invalid',
          '-c',
          'init.defaultBranch=main',
          ...args,
        ],
        { cwd: dir, encoding: 'utf8' },
      ).trim();
    git('init', '-q');
    git('add', '.');
    git('commit', '-q', '-m', 'policies');
    const commit = git('rev-parse', 'HEAD');
    const file = path.join(tmp, 'git.jws');
    expect(
      runCli(['bundle', 'build', dir, '-o', file, '--key', operator.priv, '--revision', '5'])
        .status,
    ).toBe(0);
    const audit = path.join(mkdtempSync(path.join(tmpdir(), 'gh-bundle-git-')), 'audit.log');
    const server = await spawnServe([
      '--bundle',
      file,
      '--bundle-key',
      operator.pub,
      '--trust-domain',
      'shop.example',
      '--audit-log',
      audit,
    ]);
    const client = checkClient(server.port);
    try {
      const info = (await (
        await fetch(`http://127.0.0.1:${server.adminPort}/v1/policy`)
      ).json()) as { git: unknown };
      expect(info.git).toEqual({ commit, dirty: false });
      await client.check(
        envoyCheckRequest({ principal: 'spiffe://shop.example/git', host: 'svc', path: '/' }),
      );
      await waitFor(() => readFileSync(audit, 'utf8').includes('"decision_id"'), 'an audit record');
      const record = JSON.parse(readFileSync(audit, 'utf8').split('\n')[0]!) as Record<
        string,
        unknown
      >;
      expect(record['policy_commit']).toBe(commit.slice(0, 12));
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    }
  });

  test('a recorded commit that is not one is ignored, not shown', async () => {
    const { loadPolicyDir } = await import('../../src/policy/load');
    const dir = policySet('x');
    writeFileSync(
      path.join(dir, '.gatehouse-git.json'),
      JSON.stringify({ commit: 'not-a-commit; rm -rf /', dirty: false }),
    );
    const loaded = await loadPolicyDir(dir);
    expect(loaded.ok && loaded.set.git).toBeUndefined();
  });
});
