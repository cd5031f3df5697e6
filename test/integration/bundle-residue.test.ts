import { CompactSign, importPKCS8 } from 'jose';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { buildBundle, BUNDLE_TYPE } from '../../src/bundle/bundle';
import { BundlePoller } from '../../src/bundle/poller';
import { bundlePolicySet as policySet } from '../helpers/policies';
import { memoryLogger } from '../helpers/server';

const tmp = mkdtempSync(path.join(tmpdir(), 'gh-bundle-residue-'));
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const privPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const pubPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
// Revisions unique to this run, so counting their folders in the shared $TMPDIR is exact.
const base = Date.now();

const good = async (revision: number) => (await buildBundle(policySet('a'), privPem, revision)).jws;

/** Signed and newer, but its own tests fail: it unpacks, then is refused. */
async function failingTests(revision: number): Promise<string> {
  const payload = JSON.parse(
    Buffer.from((await good(revision)).split('.')[1]!, 'base64url').toString(),
  );
  payload.files['svc.test.yaml'] = payload.files['svc.test.yaml'].replace(
    'expect: allow',
    'expect: { deny: 403 }',
  );
  const key = await importPKCS8(privPem, 'EdDSA');
  return new CompactSign(Buffer.from(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'EdDSA', typ: BUNDLE_TYPE })
    .sign(key);
}

const foldersOf = (revision: number) =>
  readdirSync(tmpdir()).filter((n) => n.startsWith(`gatehouse-bundle-${revision}-`));

async function metricsText(registry: Registry): Promise<string> {
  return registry.metrics();
}

test('a failing bundle leaves no folder behind, is tried once per content, and is logged once; replaced folders are removed', async () => {
  const file = path.join(tmp, 'b.jws');
  writeFileSync(file, await good(base));
  const logs = memoryLogger();
  const poller = new BundlePoller(file, pubPem, logs.log);
  const registry = new Registry();
  const first = await poller.initial();
  poller.registerMetrics(registry);
  let activations = 0;
  const activate = async () => (activations++, true);

  writeFileSync(file, await failingTests(base + 1));
  for (let i = 0; i < 5; i++) {
    utimesSync(file, new Date(), new Date(Date.now() + (i + 1) * 1000)); // touched, same bytes
    await poller.pollOnce(activate);
  }
  expect(foldersOf(base + 1)).toEqual([]);
  expect(logs.lines().filter((l) => l['msg'] === 'bundle not activated')).toHaveLength(1);
  expect(await metricsText(registry)).toContain(
    'gatehouse_bundle_refusals_total{reason="tests_fail"} 1',
  );
  expect(activations).toBe(0);

  writeFileSync(file, await good(base + 2));
  await poller.pollOnce(activate);
  expect(activations).toBe(1);
  expect(existsSync(first.dir)).toBe(false); // replaced: removed
  expect(foldersOf(base + 2)).toHaveLength(1);
  expect(await metricsText(registry)).toContain(`gatehouse_bundle_revision ${base + 2}`);
  await poller.removeFiles();
  expect(foldersOf(base + 2)).toEqual([]);
  expect(foldersOf(base)).toEqual([]);
});

test('a bundle URL failing for a while is one episode: one line when it starts, one with the count when it ends', async () => {
  let status = 200;
  let body = await good(base + 10);
  const origin = http.createServer((_req, res) => {
    if (status !== 200) return void res.writeHead(status).end();
    res.writeHead(200, { etag: `"${body.length}"` }).end(body);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(origin.address() as { port: number }).port}/b`;
  const logs = memoryLogger();
  const poller = new BundlePoller(url, pubPem, logs.log);
  const registry = new Registry();
  try {
    await poller.initial();
    poller.registerMetrics(registry);
    status = 500;
    for (let i = 0; i < 6; i++) await poller.pollOnce(async () => true);
    status = 200;
    body = await good(base + 11);
    await poller.pollOnce(async () => true);
    const episode = logs.lines().filter((l) => /^bundle source/.test(String(l['msg'])));
    expect(episode).toEqual([
      expect.objectContaining({
        msg: 'bundle source cannot be read; the active bundle keeps serving',
        cause: 'bundle URL answered 500',
      }),
      expect.objectContaining({ msg: 'bundle source readable again', failedPolls: 6 }),
    ]);
    expect(await metricsText(registry)).toContain('gatehouse_bundle_fetch_failures_total 6');
    expect(await metricsText(registry)).toContain(`gatehouse_bundle_revision ${base + 11}`);
  } finally {
    await poller.removeFiles();
    origin.close();
  }
});

test('a bundle activated while its state file cannot be written keeps its folder, and is not counted as refused', async () => {
  const file = path.join(tmp, 'state-fails.jws');
  writeFileSync(file, await good(base + 30));
  const stateDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-state-'));
  const logs = memoryLogger();
  const poller = new BundlePoller(file, pubPem, logs.log, path.join(stateDir, 'state.json'));
  const registry = new Registry();
  await poller.initial();
  poller.registerMetrics(registry);
  // The state volume goes bad after start: its directory is now a file, so every write fails.
  rmSync(stateDir, { recursive: true, force: true });
  writeFileSync(stateDir, 'not a directory');
  let served: string | undefined;
  writeFileSync(file, await good(base + 31));
  await poller.pollOnce(async (bundle) => ((served = bundle.dir), true));
  expect(served).toBeDefined();
  expect(existsSync(served!)).toBe(true); // the folder being served is still there
  expect(await metricsText(registry)).not.toContain(
    'gatehouse_bundle_refusals_total{reason="unverified"} 1',
  );
  expect(logs.lines().some((l) => l['msg'] === 'bundle activated')).toBe(true);
  rmSync(stateDir, { force: true });
  await poller.removeFiles();
});
