import { request } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { runCli, spawnServe, type ServeProcess } from '../helpers/cli';
import { checkClient } from '../helpers/grpc-client';
import { policyDir, servicePolicy } from '../helpers/policies';
import { envoyCheckRequest } from '../helpers/requests';
import { waitFor } from '../helpers/wait';
import { httpListenHost, parseListenAddress } from '../../src/server/listen-address';

const CALLER = 'spiffe://shop.example/ns/a/sa/a';

/** GET over a real socket to an explicit address family, so `localhost` resolution cannot hide which one answered. */
function get(
  host: string,
  port: number,
  urlPath: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: urlPath, headers, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => (body += b.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function stop(server: ServeProcess): Promise<number | null> {
  if (server.child.exitCode === null) server.child.kill('SIGTERM');
  return server.exited;
}

describe('listen address forms', () => {
  test.each([
    ['::', '::'],
    ['[::]', '::'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['0.0.0.0', '0.0.0.0'],
    ['localhost', 'localhost'],
  ])('%s is kept as %s', (given, bare) => {
    expect(parseListenAddress(given)).toBe(bare);
  });

  test.each(['', '[]', '[::1', '::1]', '127.0.0.1:9191', '[127.0.0.1]', 'a b', 'host/path'])(
    '%j is refused',
    (given) => {
      expect(() => parseListenAddress(given)).toThrow(/listen address/);
    },
  );

  test('listeners get IPv6 without brackets', () => {
    expect(httpListenHost('[::1]')).toBe('::1');
    expect(httpListenHost('::')).toBe('::');
  });

  test('serve refuses a listen address with a port in it, in words', () => {
    const r = runCli(['serve', '--listen-address', '127.0.0.1:9191', '--policies', 'policies']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/is not an IPv4 or IPv6 address/);
  });
});

describe('serving on IPv6', () => {
  const dir = policyDir({
    'p.yaml': servicePolicy('v6', ['v6'], `    - name: r\n      allow: [${CALLER}]`),
  });
  const audit = (): string => path.join(mkdtempSync(path.join(tmpdir(), 'gh-v6-')), 'a.log');

  test.each(['::1', '[::1]'])(
    '--listen-address %s: gRPC Check, HTTP mode and admin answer on ::1 with real clients',
    async (address) => {
      const server = await spawnServe([
        '--policies',
        dir,
        '--trust-domain',
        'shop.example',
        '--no-watch',
        '--http-port',
        '0',
        '--audit-log',
        audit(),
        '--listen-address',
        address,
      ]);
      const client = checkClient(server.port, { host: '[::1]' });
      try {
        const allowed = await client.check(
          envoyCheckRequest({ principal: CALLER, host: 'v6', path: '/' }),
        );
        expect(allowed.status?.code ?? 0).toBe(0);
        const denied = await client.check(
          envoyCheckRequest({
            principal: 'spiffe://shop.example/ns/b/sa/b',
            host: 'v6',
            path: '/',
          }),
        );
        expect(denied.status?.code).toBe(7);
        expect(await get('::1', server.adminPort, '/readyz')).toMatchObject({ status: 200 });
        const metrics = await get('::1', server.adminPort, '/metrics');
        expect(metrics.body).toMatch(/gatehouse_checks_total\{result="allow"/);
        // The HTTP mode (Envoy dialect) on the same address: no identity here, so 401, decided not refused.
        const http = await get('::1', server.httpPort!, '/', { host: 'v6' });
        expect(http.status).toBe(401);
        // Bound to ::1 only: IPv4 loopback is not served.
        await expect(get('127.0.0.1', server.adminPort, '/healthz')).rejects.toThrow(
          /ECONNREFUSED/,
        );
      } finally {
        client.close();
        expect(await stop(server)).toBe(0);
      }
    },
  );

  test('--listen-address :: is dual-stack: IPv4 and IPv6 clients both reach gRPC and admin', async () => {
    const server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--no-watch',
      '--http-port',
      '0',
      '--audit-log',
      audit(),
      '--listen-address',
      '::',
    ]);
    const v6 = checkClient(server.port, { host: '[::1]' });
    const v4 = checkClient(server.port, { host: '127.0.0.1' });
    try {
      for (const client of [v6, v4]) {
        const allowed = await client.check(
          envoyCheckRequest({ principal: CALLER, host: 'v6', path: '/' }),
        );
        expect(allowed.status?.code ?? 0).toBe(0);
      }
      expect(await get('::1', server.adminPort, '/healthz')).toMatchObject({ status: 200 });
      expect(await get('127.0.0.1', server.adminPort, '/healthz')).toMatchObject({ status: 200 });
      expect((await get('127.0.0.1', server.httpPort!, '/', { host: 'v6' })).status).toBe(401);
      expect((await get('::1', server.httpPort!, '/', { host: 'v6' })).status).toBe(401);
    } finally {
      v6.close();
      v4.close();
      expect(await stop(server)).toBe(0);
    }
  });

  test('with workers, the primary admin and the workers gRPC bind ::1', async () => {
    const server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--no-watch',
      '--audit-log',
      audit(),
      '--listen-address',
      '[::1]',
      '--workers',
      '2',
    ]);
    const client = checkClient(server.port, { host: '[::1]' });
    try {
      const allowed = await client.check(
        envoyCheckRequest({ principal: CALLER, host: 'v6', path: '/' }),
      );
      expect(allowed.status?.code ?? 0).toBe(0);
      // Workers report ready to the primary shortly after the first one serves.
      await waitFor(
        async () => (await get('::1', server.adminPort, '/readyz')).status === 200,
        'every worker ready on ::1',
      );
    } finally {
      client.close();
      expect(await stop(server)).toBe(0);
    }
  });
});
