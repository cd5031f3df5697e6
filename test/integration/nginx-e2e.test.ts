import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawnServe, type ServeProcess } from '../helpers/cli';
import { TestCa, type Issued } from '../helpers/pki';
import { policyDir, servicePolicy } from '../helpers/policies';
import { startNginx, type NginxProcess } from '../helpers/nginx';

/**
 * The product end to end through a real proxy: nginx terminates mTLS with SPIFFE client
 * certificates, asks Gatehouse (HTTP mode, nginx dialect) with auth_request, and proxies to
 * an upstream that echoes what it receives.
 */
const NGINX_HINT =
  'nginx is not installed: run `make test-deps` (or `apt-get install -y nginx-light`); `make test` installs it';

function requireNginx(): void {
  if (spawnSync('sh', ['-c', 'command -v nginx && command -v openssl']).status !== 0)
    throw new Error(NGINX_HINT);
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe('nginx auth_request → Gatehouse → upstream, with mTLS SPIFFE client certificates', () => {
  const ca = new TestCa('shop');
  const rogue = new TestCa('rogue');
  let web: Issued;
  let batch: Issued;
  let impostor: Issued;
  let nginx: NginxProcess | undefined;
  let nginxPort: number;
  let gatehouse: ServeProcess;
  let upstream: http.Server;
  let upstreamSeen: http.IncomingHttpHeaders[] = [];
  let prefix: string;
  /** TCP connections nginx opened to Gatehouse, counted by a pass-through proxy in between. */
  let gatehouseConnections = 0;
  let counter: net.Server;

  beforeAll(async () => {
    requireNginx();
    web = ca.issue('web', 'URI:spiffe://shop.example/ns/frontend/sa/web');
    batch = ca.issue('batch', 'URI:spiffe://shop.example/ns/checkout/sa/batch');
    impostor = rogue.issue('impostor', 'URI:spiffe://shop.example/ns/frontend/sa/web');
    const server = ca.issue('server', 'DNS:localhost,IP:127.0.0.1', [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
    ]);

    upstream = http.createServer((req, res) => {
      upstreamSeen.push(req.headers);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ path: req.url, headers: req.headers }));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    const upstreamPort = (upstream.address() as { port: number }).port;

    const policies = policyDir({
      'app.yaml': servicePolicy(
        'app',
        ['localhost'],
        `    - name: limited
      paths: [/limited]
      allow: [spiffe://shop.example/ns/frontend/sa/web]
      rateLimit: { capacity: 2, refillPerSecond: 0.01 }
    - name: pages
      paths: ["/**"]
      allow: [spiffe://shop.example/ns/frontend/**, spiffe://shop.example/ns/checkout/**]
      deny: [spiffe://shop.example/ns/checkout/sa/batch]`,
      ),
    });
    gatehouse = await spawnServe([
      '--policies',
      policies,
      '--trust-domain',
      'shop.example',
      '--audit-log',
      '/dev/null',
      '--http-port',
      '0',
      '--http-dialect',
      'nginx',
      '--http-client-cert-header',
      'x-ssl-client-cert',
      '--trust-bundle',
      `shop.example=${ca.cert}`,
    ]);

    counter = net.createServer((socket) => {
      gatehouseConnections++;
      const target = net.connect(gatehouse.httpPort!, '127.0.0.1');
      socket.pipe(target).pipe(socket);
      const close = (): void => {
        socket.destroy();
        target.destroy();
      };
      socket.on('error', close);
      target.on('error', close);
    });
    await new Promise<void>((r) => counter.listen(0, '127.0.0.1', () => r()));
    nginx = await startNginx({
      name: 'nginx-e2e',
      workerConnections: 128,
      http: (port) =>
        nginxServer({
          nginxPort: port,
          gatehousePort: (counter.address() as net.AddressInfo).port,
          upstreamPort,
          cert: server.cert,
          key: server.key,
        }),
    });
    nginxPort = nginx.port;
    prefix = nginx.prefix;
    await request('/', web);
    upstreamSeen = [];
  }, 60_000);

  afterAll(async () => {
    await nginx?.stop();
    upstream?.close();
    counter?.close();
    if (gatehouse) {
      gatehouse.child.kill('SIGTERM');
      await gatehouse.exited;
    }
  });

  function request(
    urlPath: string,
    client: Issued | undefined,
    headers: Record<string, string> = {},
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: nginxPort,
          path: urlPath,
          servername: 'localhost',
          headers: { host: 'localhost', ...headers },
          ca: readFileSync(ca.cert),
          ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
          agent: false,
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.setTimeout(5000, () => req.destroy(new Error('timeout')));
      req.end();
    });
  }

  test('a permitted caller passes and the upstream sees the x-gatehouse-* headers', async () => {
    const r = await request('/products/42?color=red', web);
    expect(r.status).toBe(200);
    const echoed = JSON.parse(r.body) as { path: string; headers: Record<string, string> };
    expect(echoed.path).toBe('/products/42?color=red');
    expect(echoed.headers['x-gatehouse-caller']).toBe('spiffe://shop.example/ns/frontend/sa/web');
    expect(echoed.headers['x-gatehouse-policy']).toMatch(/^app@[0-9a-f]{16}$/);
    expect(echoed.headers['x-gatehouse-decision']).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('a spoofed x-gatehouse-caller from the client never reaches the upstream', async () => {
    const r = await request('/products/1', web, {
      'x-gatehouse-caller': 'spiffe://shop.example/ns/admin/sa/root',
      'x-gatehouse-policy': 'forged@0',
    });
    expect(r.status).toBe(200);
    const seen = upstreamSeen[upstreamSeen.length - 1]!;
    expect(seen['x-gatehouse-caller']).toBe('spiffe://shop.example/ns/frontend/sa/web');
    expect(seen['x-gatehouse-policy']).not.toBe('forged@0');
    expect(JSON.stringify(upstreamSeen)).not.toContain('ns/admin/sa/root');
  });

  test('a refused caller gets the 403 JSON and nothing reaches the upstream', async () => {
    const before = upstreamSeen.length;
    const r = await request('/products/1', batch);
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toContain('application/json');
    const body = JSON.parse(r.body) as Record<string, string>;
    expect(body).toMatchObject({
      error: 'forbidden',
      reason: expect.stringContaining('refused by rule pages'),
    });
    expect(body['decision_id']).toBe(r.headers['x-gatehouse-decision']);
    expect(upstreamSeen.length).toBe(before);
  });

  test('a caller over budget gets 429 with retry-after', async () => {
    expect((await request('/limited', web)).status).toBe(200);
    expect((await request('/limited', web)).status).toBe(200);
    const r = await request('/limited', web);
    expect(r.status).toBe(429);
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'rate_limited' });
    expect(r.headers['x-gatehouse-decision']).toMatch(/^[0-9a-f-]{36}$/);
    // A 429 is a decision, not an error: nothing about it at [error] in nginx's log.
    expect(readFileSync(path.join(prefix, 'error.log'), 'utf8')).not.toMatch(
      /\[error\].*(unexpected status|429)/,
    );
  });

  test("the app sees the client's Host, and checks reuse kept-alive connections to Gatehouse", async () => {
    const r = await request('/products/7', web);
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { headers: Record<string, string> }).headers['host']).toBe(
      'localhost',
    );
    const before = gatehouseConnections;
    for (let i = 0; i < 5; i++) expect((await request('/products/7', web)).status).toBe(200);
    // Five checks over the connection(s) nginx keeps open, not five new ones.
    expect(gatehouseConnections - before).toBeLessThanOrEqual(1);
  });

  test('a certificate from an unknown CA is rejected, and so is no certificate', async () => {
    const rogueReply = await request('/products/1', impostor);
    expect(rogueReply.status).toBe(401);
    expect(JSON.parse(rogueReply.body)).toMatchObject({
      error: 'unauthenticated',
      reason: expect.stringContaining('not signed by an authority'),
    });
    const none = await request('/products/1', undefined);
    expect(none.status).toBe(401);
  });
});

/** The example server block, filled in for this test's ports and certificate. */
function nginxServer(o: {
  nginxPort: number;
  gatehousePort: number;
  upstreamPort: number;
  cert: string;
  key: string;
}): string {
  return readFileSync(
    path.join(__dirname, '..', '..', 'examples', 'nginx', 'gatehouse-server.conf'),
    'utf8',
  )
    .replace(/__LISTEN__/g, `127.0.0.1:${o.nginxPort}`)
    .replace(/__CERT__/g, o.cert)
    .replace(/__KEY__/g, o.key)
    .replace(/__GATEHOUSE__/g, `127.0.0.1:${o.gatehousePort}`)
    .replace(/__UPSTREAM__/g, `127.0.0.1:${o.upstreamPort}`);
}
