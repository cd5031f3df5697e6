import { exportJWK, generateKeyPair } from 'jose';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { endpointProblem, TrustBundleStore } from '../../src/identity/trust-bundle-store';
import { freePort } from '../helpers/ports';
import { waitFor } from '../helpers/wait';
import { memoryLogger } from '../helpers/server';

const dir = mkdtempSync(path.join(tmpdir(), 'gh-tb-'));

async function spiffeBundle(kid: string, hint?: number): Promise<string> {
  const { publicKey } = await generateKeyPair('ES256');
  return JSON.stringify({
    keys: [{ ...(await exportJWK(publicKey)), use: 'jwt-svid', kid }],
    ...(hint ? { spiffe_refresh_hint: hint } : {}),
  });
}

const kids = (store: TrustBundleStore, domain: string): string[] => [
  ...(store.bundles.get(domain)?.jwtKeys.keys() ?? []),
];

describe('trust bundles stay current off the hot path', () => {
  test('a file is read again when it is replaced (rotation by rename); a broken file keeps the last good bundle', async () => {
    const file = path.join(dir, 'shop.json');
    writeFileSync(file, await spiffeBundle('k1'));
    const logs = memoryLogger();
    const store = await TrustBundleStore.open([{ domain: 'shop.example', source: file }], logs.log);
    try {
      expect(kids(store, 'shop.example')).toEqual(['k1']);
      writeFileSync(`${file}.tmp`, await spiffeBundle('k2'));
      renameSync(`${file}.tmp`, file);
      await waitFor(() => kids(store, 'shop.example')[0] === 'k2', 'k2');
      writeFileSync(file, '{ not json');
      await waitFor(
        () => logs.lines().some((l) => l['msg'] === 'trust bundle refresh failed'),
        'the failure log',
      );
      expect(kids(store, 'shop.example')).toEqual(['k2']);
    } finally {
      store.close();
    }
  });

  test('bundle endpoints must be https (plain http on loopback only), without credentials', async () => {
    expect(endpointProblem('https://bundle.shop.example/bundle')).toBeUndefined();
    expect(endpointProblem('http://127.0.0.1:8443/bundle')).toBeUndefined();
    expect(endpointProblem('http://localhost:8443/bundle')).toBeUndefined();
    expect(endpointProblem('http://bundle.shop.example/bundle')).toContain('must be https://');
    expect(endpointProblem('http://127.0.0.1.evil.example/bundle')).toContain('must be https://');
    expect(endpointProblem('https://user:secret@bundle.shop.example/')).toContain(
      'must not carry credentials',
    );
    const { log } = memoryLogger();
    await expect(
      TrustBundleStore.open(
        [{ domain: 'shop.example', source: 'http://bundle.shop.example/b' }],
        log,
      ),
    ).rejects.toThrow('must be https://');
  });

  test('an oversized bundle from an endpoint is refused without reading it all', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"keys":[],"pad":"${'x'.repeat(2 * 1024 * 1024)}"}`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { log, lines } = memoryLogger();
    const store = await TrustBundleStore.open(
      [
        {
          domain: 'shop.example',
          source: `http://127.0.0.1:${(server.address() as { port: number }).port}/b`,
        },
      ],
      log,
    );
    try {
      expect(store.bundles.has('shop.example')).toBe(false);
      expect(lines().some((l) => l['err'] === 'bundle is too large')).toBe(true);
    } finally {
      store.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('a missing file stops the server from starting', async () => {
    await expect(
      TrustBundleStore.open(
        [{ domain: 'shop.example', source: path.join(dir, 'nope.json') }],
        memoryLogger().log,
      ),
    ).rejects.toThrow(/trust bundle of shop\.example .*nope\.json does not exist/);
  });

  test('a bundle endpoint URL is refreshed on its refresh hint, and its last good bundle survives failures', async () => {
    let body = await spiffeBundle('u1', 1);
    let status = 200;
    let hits = 0;
    const server = http.createServer((_req, res) => {
      hits++;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? body : 'oops');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/bundle`;
    const logs = memoryLogger();
    const store = await TrustBundleStore.open([{ domain: 'shop.example', source: url }], logs.log, {
      retryMs: 200,
    });
    try {
      expect(kids(store, 'shop.example')).toEqual(['u1']);
      body = await spiffeBundle('u2', 1);
      await waitFor(() => kids(store, 'shop.example')[0] === 'u2', 'u2 after the 1 s hint');
      status = 500;
      const before = hits;
      await waitFor(() => hits >= before + 3, 'retries while failing');
      expect(kids(store, 'shop.example')).toEqual(['u2']);
      expect(logs.lines().filter((l) => l['msg'] === 'trust bundle refresh failed')).toHaveLength(
        1,
      );
    } finally {
      store.close();
      server.close();
    }
  });

  test('an unreachable endpoint at start: the server starts without it and picks it up later', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/bundle`;
    const logs = memoryLogger();
    const store = await TrustBundleStore.open([{ domain: 'late.example', source: url }], logs.log, {
      retryMs: 200,
    });
    const body = await spiffeBundle('late', 60);
    const server = http.createServer((_req, res) => res.end(body));
    try {
      expect(store.bundles.has('late.example')).toBe(false);
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
      await waitFor(() => store.bundles.has('late.example'), 'the late bundle');
      expect(kids(store, 'late.example')).toEqual(['late']);
    } finally {
      store.close();
      server.close();
    }
  });
});
