import * as http from 'node:http';
import * as net from 'node:net';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readTrustBundle } from '../../src/identity/trust-bundle';
import { basicConstraintsCa, keyUsage, verifyX509Svid } from '../../src/identity/x509-svid';
import { spawnServe, type ServeProcess } from '../helpers/cli';
import { grpcCertificateCase } from '../helpers/cert-cases';
import { TestCa, type Issued } from '../helpers/pki';
import { gatewayExamplePolicies } from '../helpers/policies';

/** The HTTP mode serves edge proxies: no destination identity, so policies are selected by the routed Host. */
const EXAMPLE_POLICIES = gatewayExamplePolicies();
/** `serve` flags for those policies of trust domain shop.example, audit discarded; a test adds its own. */
const SERVE_ARGS: readonly string[] = [
  '--policies',
  EXAMPLE_POLICIES,
  '--trust-domain',
  'shop.example',
  '--audit-log',
  '/dev/null',
];
import { CHECKOUT_BATCH, CHECKOUT_WEB, ORDERS } from '../helpers/requests';
import pino from 'pino';
import { HttpAuthServer, type HttpModeOptions } from '../../src/server/http-mode';
import type { DecisionEngine } from '../../src/pipeline/engine';
import type { CheckInput } from '../../src/envoy/check-input';
import { normalizeCheckRequest, type NormalizedRequest } from '../../src/request/normalize';
import { sampleDecision } from '../helpers/decision';
import { waitFor } from '../helpers/wait';

/** node:http rather than fetch: fetch refuses to set the Host header, which Envoy does set. */
function call(
  port: number,
  path: string,
  init: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: { get(name: string): string | null }; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: init.method ?? 'GET',
        headers: init.headers ?? {},
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          const value = (name: string): string | null => {
            const v = res.headers[name];
            return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
          };
          resolve({ status: res.statusCode!, headers: { get: value }, body });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('HTTP mode, Envoy dialect (http_service with a path prefix)', () => {
  let server: ServeProcess;
  const ca = new TestCa('shop-http');
  let web: Issued;
  let checkoutWeb: Issued;
  const cert = (i: Issued): string => encodeURIComponent(i.certPem);

  beforeAll(async () => {
    web = ca.issue('web', 'URI:spiffe://shop.example/ns/frontend/sa/web');
    checkoutWeb = ca.issue('checkout-web', 'URI:spiffe://shop.example/ns/checkout/sa/web');
    server = await spawnServe([
      ...SERVE_ARGS,
      '--trust-xfcc',
      '--http-port',
      '0',
      '--http-path-prefix',
      '/authz',
      '--http-client-cert-header',
      'x-client-cert',
      '--trust-bundle',
      `shop.example=${ca.cert}`,
    ]);
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  test('exactly 200 allows, with upstream headers and x-envoy-auth-headers-to-remove', async () => {
    const r = await call(server.httpPort!, '/authz/v1/orders', {
      method: 'POST',
      headers: {
        host: 'orders.shop.svc.cluster.local',
        'x-client-cert': cert(checkoutWeb),
        'x-gatehouse-role': 'admin',
        'x-gatehouse-caller': 'forged',
      },
    });
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
    expect(r.headers.get('x-gatehouse-caller')).toBe(CHECKOUT_WEB);
    expect(r.headers.get('x-gatehouse-policy')).toMatch(/^orders@/);
    expect(r.headers.get('x-envoy-auth-headers-to-remove')).toBe('x-gatehouse-role');
    expect(r.headers.get('ratelimit-remaining')).toBe('19');
    expect(r.headers.get('x-gatehouse-deny-body')).toBeNull();
  });

  test('the deny status, headers and JSON body go to the client', async () => {
    const refused = await call(server.httpPort!, '/authz/v1/orders', {
      method: 'POST',
      headers: { host: 'orders', 'x-forwarded-client-cert': `URI=${CHECKOUT_BATCH}` },
    });
    expect(refused.status).toBe(403);
    expect(refused.headers.get('content-type')).toBe('application/json');
    expect(JSON.parse(refused.body)).toMatchObject({
      error: 'forbidden',
      decision_id: refused.headers.get('x-gatehouse-decision'),
    });
    const anon = await call(server.httpPort!, '/authz/v1/orders', { headers: { host: 'orders' } });
    expect(anon.status).toBe(401);
    for (let i = 0; i < 5; i++)
      await call(server.httpPort!, '/authz/v1/charges', {
        method: 'POST',
        headers: { host: 'payments', 'x-forwarded-client-cert': `URI=${ORDERS}` },
      });
    const limited = await call(server.httpPort!, '/authz/v1/charges', {
      method: 'POST',
      headers: { host: 'payments', 'x-forwarded-client-cert': `URI=${ORDERS}` },
    });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
  });

  test('a path outside the prefix, or a dot segment, is denied as malformed', async () => {
    expect(
      (
        await call(server.httpPort!, '/other/v1/orders', {
          headers: { host: 'orders', 'x-client-cert': cert(web) },
        })
      ).status,
    ).toBe(403);
    const dots = await call(server.httpPort!, '/authz/v1/orders/%2e%2e/admin', {
      headers: { host: 'orders', 'x-client-cert': cert(web) },
    });
    expect(dots.status).toBe(403);
    expect(JSON.parse(dots.body).reason).toContain('malformed request');
  });
});

test("HTTP mode, Traefik dialect: the original request from X-Forwarded-*, the caller from passTLSClientCert's header", async () => {
  const ca = new TestCa('shop-traefik');
  // Traefik's passTLSClientCert (pem: true): base64 DER without BEGIN/END lines, URL-escaped, chain after ','.
  const traefikForm = (pem: string): string =>
    encodeURIComponent(`${pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '')},MIIBchain`);
  const checkout = traefikForm(ca.issue('t-checkout', `URI:${CHECKOUT_WEB}`).certPem);
  const batch = traefikForm(ca.issue('t-batch', `URI:${CHECKOUT_BATCH}`).certPem);
  const server = await spawnServe([
    ...SERVE_ARGS,
    '--http-port',
    '0',
    '--http-dialect',
    'traefik',
    '--http-client-cert-header',
    'X-Forwarded-Tls-Client-Cert',
    '--trust-bundle',
    `shop.example=${ca.cert}`,
  ]);
  try {
    const headers = (cert: string, method: string, uri: string) => ({
      'x-forwarded-method': method,
      'x-forwarded-uri': uri,
      'x-forwarded-host': 'orders',
      'x-forwarded-tls-client-cert': cert,
    });
    const ok = await call(server.httpPort!, '/', {
      headers: headers(checkout, 'GET', '/v1/orders/9'),
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-gatehouse-caller')).toBe(CHECKOUT_WEB);
    expect(
      (await call(server.httpPort!, '/', { headers: headers(batch, 'POST', '/v1/orders') })).status,
    ).toBe(403);
    // Without --trust-xfcc a client's own XFCC header names nobody.
    expect(
      (
        await call(server.httpPort!, '/', {
          headers: {
            ...headers('', 'GET', '/v1/orders/9'),
            'x-forwarded-client-cert': `URI=${CHECKOUT_WEB}`,
          },
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await call(server.httpPort!, '/v1/orders/9', {
          headers: { host: 'orders', 'x-forwarded-tls-client-cert': checkout },
        })
      ).status,
    ).toBe(403);
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
});

test('HTTP mode drains: a keep-alive connection busy at SIGTERM gets its answer with connection: close, and the process exits 0 promptly', async () => {
  const server = await spawnServe([
    ...SERVE_ARGS,
    '--http-port',
    '0',
    '--http-dialect',
    'traefik',
    '--drain-timeout',
    '3000',
  ]);
  const socket = net.connect(server.httpPort!, '127.0.0.1');
  let reply = '';
  socket.on('data', (b: Buffer) => (reply += b.toString()));
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  // Half a request: the connection is busy, not idle, when the drain starts.
  socket.write(
    'GET / HTTP/1.1\r\nHost: gatehouse\r\nConnection: keep-alive\r\nX-Forwarded-Method: GET\r\n',
  );
  // Nothing reports that the server has read the half request: allow it a bounded moment.
  await new Promise((r) => setTimeout(r, 200));
  const killedAt = Date.now();
  server.child.kill('SIGTERM');
  // The server logs this just before it closes its HTTP listener and connections.
  await waitFor(() => server.stderr().includes('"msg":"draining"'), 'the drain to start', 5000);
  socket.write('X-Forwarded-Uri: /v1/orders/1\r\nX-Forwarded-Host: orders\r\n\r\n');
  const code = await server.exited;
  const tookMs = Date.now() - killedAt;
  socket.destroy();
  expect(code).toBe(0);
  expect(reply).toMatch(/^HTTP\/1\.1 401 /); // answered (no identity), not dropped
  expect(reply.toLowerCase()).toContain('connection: close');
  // Well inside the drain deadline; a kept-alive socket would hold the process for 65 s.
  expect(tookMs).toBeLessThan(2500);
});

describe('X509-SVID verification of forwarded certificates', () => {
  const ca = new TestCa('svid');
  const other = new TestCa('other');
  const WEB = 'URI:spiffe://shop.example/ns/frontend/sa/web';
  /** A leaf for the web workload; with no extensions, a valid SVID's. */
  const webLeaf = (name: string, extensions?: string[]) => () => ca.issue(name, WEB, extensions);
  /** A leaf for the web workload, not a CA, with this keyUsage line. */
  const webLeafUsage = (name: string, keyUsage: string) =>
    webLeaf(name, ['basicConstraints=critical,CA:FALSE', `keyUsage=${keyUsage}`]);
  test.each([
    ['a valid SVID', webLeaf('ok'), 'allow'],
    [
      'two URI SANs',
      () =>
        ca.issue(
          'two',
          'URI:spiffe://shop.example/ns/frontend/sa/web,URI:spiffe://shop.example/ns/x/sa/y',
        ),
      'exactly one URI SAN',
    ],
    ['no URI SAN', () => ca.issue('dns', 'DNS:web.shop.example'), 'exactly one URI SAN (has 0)'],
    [
      'a URI SAN that is not SPIFFE',
      () => ca.issue('http', 'URI:https://shop.example/web'),
      'must start with spiffe://',
    ],
    [
      'a CA certificate',
      webLeaf('ca', ['basicConstraints=critical,CA:TRUE']),
      'is a CA certificate',
    ],
    // Node's X509Certificate.ca is false here (no keyCertSign); the DER says cA=true.
    [
      'cA=true with a leaf key usage',
      webLeaf('ca-leaf-ku', [
        'basicConstraints=critical,CA:TRUE',
        'keyUsage=critical,digitalSignature',
      ]),
      'is a CA certificate',
    ],
    [
      'cA=true, not critical, with a path length',
      webLeaf('ca-soft', [
        'basicConstraints=CA:TRUE,pathlen:0',
        'keyUsage=critical,digitalSignature',
      ]),
      'is a CA certificate',
    ],
    [
      'key usage without digitalSignature',
      webLeafUsage('ku-enc', 'critical,keyAgreement'),
      'lacks digitalSignature',
    ],
    [
      'key usage that can sign certificates',
      webLeafUsage('ku-sign', 'critical,digitalSignature,keyCertSign'),
      'allows signing certificates',
    ],
    ['signed by another authority', () => other.issue('rogue', WEB), 'not signed by an authority'],
    [
      'a trust domain without a bundle',
      () => ca.issue('elsewhere', 'URI:spiffe://elsewhere.example/ns/a/sa/b'),
      "no trust bundle for trust domain 'elsewhere.example'",
    ],
    [
      'a trust domain ID without a path',
      () => ca.issue('td-only', 'URI:spiffe://shop.example'),
      'has no path',
    ],
    [
      'no key usage extension',
      webLeaf('ku-none', ['basicConstraints=critical,CA:FALSE']),
      'has no key usage extension',
    ],
    [
      'a key usage extension that is not critical',
      webLeafUsage('ku-soft', 'digitalSignature'),
      'is not critical',
    ],
    [
      'key usage that can sign CRLs',
      webLeafUsage('ku-crl', 'critical,digitalSignature,cRLSign'),
      'allows signing certificates or CRLs',
    ],
  ])('%s', async (_name, make, expected) => {
    const result = await grpcCertificateCase(ca.cert, make().certPem);
    if (expected === 'allow')
      expect(result).toMatchObject({
        allowed: true,
        caller: 'spiffe://shop.example/ns/frontend/sa/web',
        identitySource: 'certificate',
      });
    else
      expect(result).toMatchObject({
        allowed: false,
        status: 401,
        reason: expect.stringContaining(expected),
      });
  });

  test('the leaf and its authority must both be within their validity windows', () => {
    const leaf = ca.issue('window', WEB);
    const bundles = new Map([['shop.example', readTrustBundle('shop.example', ca.cert)]]);
    const pem = encodeURIComponent(leaf.certPem);
    const { validFrom, validTo } = new X509Certificate(leaf.certPem);
    expect(verifyX509Svid(pem, bundles)).toMatchObject({ ok: true });
    expect(verifyX509Svid(pem, bundles, Date.parse(validFrom) - 60_000)).toEqual({
      ok: false,
      error: 'client certificate is not yet valid',
    });
    expect(verifyX509Svid(pem, bundles, Date.parse(validTo) + 60_000)).toEqual({
      ok: false,
      error: 'client certificate has expired',
    });
  });

  test('key usage is read from the extension itself, not from bytes that look like it elsewhere', () => {
    const leaf = ca.issue('ku-read', WEB);
    const der = new X509Certificate(leaf.certPem).raw;
    expect(keyUsage(der)).toEqual({
      critical: true,
      digitalSignature: true,
      keyCertSign: false,
      cRLSign: false,
    });
    expect(keyUsage(new X509Certificate(readFileSync(ca.cert)).raw)).toEqual({
      critical: true,
      digitalSignature: false,
      keyCertSign: true,
      cRLSign: true,
    });
    expect(keyUsage(der.subarray(0, 40))).toBe('malformed');
    expect(keyUsage(Buffer.from([0x30, 0x04, 0x30, 0x02, 0x02, 0x00]))).toBeUndefined(); // a tbsCertificate without extensions
  });

  test('basic constraints are read from the extension itself', () => {
    expect(basicConstraintsCa(new X509Certificate(ca.issue('bc-leaf', WEB).certPem).raw)).toBe(
      false,
    );
    expect(basicConstraintsCa(new X509Certificate(readFileSync(ca.cert)).raw)).toBe(true);
    const noConstraints = ca.issue('bc-none', WEB, ['keyUsage=critical,digitalSignature']);
    expect(basicConstraintsCa(new X509Certificate(noConstraints.certPem).raw)).toBe(false);
    expect(basicConstraintsCa(Buffer.from([0x30, 0x04, 0x30, 0x02, 0x02, 0x00]))).toBe(false);
  });

  test('garbage in the certificate field is a 401, not a crash', async () => {
    for (const junk of [
      'not a cert',
      '%E0%A4%A',
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----',
      'x'.repeat(20_000),
    ]) {
      expect(await grpcCertificateCase(ca.cert, junk)).toMatchObject({
        allowed: false,
        status: 401,
      });
    }
  });

  test('a principal and a certificate that name different workloads are a 401', async () => {
    const cert = ca.issue('mismatch', WEB).certPem;
    expect(
      await grpcCertificateCase(ca.cert, cert, 'spiffe://shop.example/ns/checkout/sa/web'),
    ).toMatchObject({ status: 401, reason: expect.stringContaining('different workloads') });
    expect(
      await grpcCertificateCase(ca.cert, cert, 'spiffe://shop.example/ns/frontend/sa/web'),
    ).toMatchObject({ allowed: true, identitySource: 'principal' });
  });
});

describe('HTTP mode request bodies (Envoy with_request_body)', () => {
  /** The adapter alone, in front of an engine that records each CheckRequest and allows. */
  async function adapter(
    options: Partial<HttpModeOptions> = {},
  ): Promise<{ server: HttpAuthServer; seen: CheckInput[] }> {
    const seen: CheckInput[] = [];
    const engine = {
      decide: async (checkRequest: CheckInput) => (seen.push(checkRequest), sampleDecision('d')),
    } as unknown as DecisionEngine;
    const server = new HttpAuthServer(engine, pino({ level: 'silent' }), {
      host: '127.0.0.1',
      port: 0,
      dialect: 'envoy',
      pathPrefix: '/authz',
      ...options,
    });
    await server.listen();
    return { server, seen };
  }
  const normalized = (checkRequest: CheckInput): NormalizedRequest => {
    const r = normalizeCheckRequest(checkRequest);
    if (!r.ok) throw new Error(r.reason);
    return r.request;
  };

  /** Sends the head, then `chunks`; ends the request only when `end` (a client still uploading otherwise). */
  function send(
    port: number,
    headers: Record<string, string>,
    chunks: (string | Buffer)[],
    end = true,
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: '/authz/v1/orders?dry=1&a=b',
          method: 'POST',
          headers: { host: 'orders', ...headers },
          agent: false,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
          req.destroy();
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) =>
        err.code === 'ECONNRESET' ? undefined : reject(err),
      );
      for (const c of chunks) req.write(c);
      if (end) req.end();
    });
  }

  test('a POST with a JSON body reaches the engine with the body, its query and content-type', async () => {
    const { server, seen } = await adapter();
    try {
      const json = JSON.stringify({ amount: 12, note: 'café' });
      expect(
        await send(
          server.port,
          { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(json)) },
          [json],
        ),
      ).toBe(200);
      const r = normalized(seen[0]);
      expect(r.body).toBe(json);
      expect(r.bodyPartial).toBe(false);
      expect(r.query).toBe('dry=1&a=b');
      expect(r.path).toBe('/v1/orders');
      expect(r.headers['content-type']).toBe('application/json');
    } finally {
      await server.close(1000);
    }
  });

  test('chunked bodies are joined; chunked framing with no data and header-only requests carry no body', async () => {
    const { server, seen } = await adapter();
    try {
      expect(await send(server.port, { 'transfer-encoding': 'chunked' }, ['{"a":', '1}'])).toBe(
        200,
      );
      expect(await send(server.port, { 'transfer-encoding': 'chunked' }, [])).toBe(200);
      expect(await send(server.port, { 'content-length': '0' }, [])).toBe(200);
      expect(await send(server.port, {}, [])).toBe(200);
      expect(seen.map((c) => normalized(c).body)).toEqual([
        '{"a":1}',
        undefined,
        undefined,
        undefined,
      ]);
    } finally {
      await server.close(1000);
    }
  });

  test('past maxBodyBytes the check runs at once on the first maxBodyBytes, marked partial, without waiting for the rest', async () => {
    const { server, seen } = await adapter({ maxBodyBytes: 16 });
    try {
      // 40 bytes of a declared 100 000: an answer proves the adapter did not wait for (or buffer) the rest.
      const status = await send(
        server.port,
        { 'content-type': 'application/json', 'content-length': '100000' },
        ['{"k":"' + 'x'.repeat(34)],
        false,
      );
      expect(status).toBe(200);
      const r = normalized(seen[0]);
      expect(r.body).toBe('{"k":"xxxxxxxxxx');
      expect(r.bodyPartial).toBe(true);
      expect(r.headers['x-envoy-auth-partial-body']).toBe('true');
      // Exactly at the bound is whole.
      expect(await send(server.port, { 'content-length': '16' }, ['y'.repeat(16)])).toBe(200);
      expect(normalized(seen[1])).toMatchObject({ body: 'y'.repeat(16), bodyPartial: false });
    } finally {
      await server.close(1000);
    }
  });

  test('a bound that would not bound anything is refused at construction', () => {
    const engine = {} as DecisionEngine;
    for (const maxBodyBytes of [Number.NaN, -1, 1.5, Infinity]) {
      expect(
        () =>
          new HttpAuthServer(engine, pino({ level: 'silent' }), {
            host: '127.0.0.1',
            port: 0,
            dialect: 'envoy',
            maxBodyBytes,
          }),
      ).toThrow(RangeError);
    }
  });

  test('the default bound is 1 MiB', async () => {
    const { server, seen } = await adapter();
    try {
      const big = Buffer.alloc(1024 * 1024 + 10, 0x61);
      expect(await send(server.port, { 'content-length': String(big.length) }, [big])).toBe(200);
      const r = normalized(seen[0]);
      expect((r.body as string).length).toBe(1024 * 1024);
      expect(r.bodyPartial).toBe(true);
    } finally {
      await server.close(1000);
    }
  });
});

test('HTTP mode checks body contracts on the forwarded body, up to --http-max-body', async () => {
  const server = await spawnServe([
    ...SERVE_ARGS,
    '--trust-xfcc',
    '--http-port',
    '0',
    '--http-max-body',
    '64',
  ]);
  const send = (body: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: server.httpPort!,
          path: '/v1/customers/c-1/address',
          method: 'PUT',
          agent: false,
          headers: {
            host: 'customers',
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'x-forwarded-client-cert': 'URI=spiffe://shop.example/ns/frontend/sa/web',
          },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  try {
    expect(
      (await send(JSON.stringify({ street: 'Main', city: 'Cork', country: 'IE' }))).status,
    ).toBe(200);
    const invalid = await send(JSON.stringify({ street: 'Main', city: 'Cork' }));
    expect(invalid.status).toBe(403);
    expect(JSON.parse(invalid.body)).toMatchObject({
      reason: expect.stringContaining("must have required property 'country'"),
    });
    // Longer than --http-max-body: checked as a truncated body, which a contract cannot accept.
    const long = await send(
      JSON.stringify({ street: 'x'.repeat(80), city: 'Cork', country: 'IE' }),
    );
    expect(long.status).toBe(403);
    expect(JSON.parse(long.body)).toMatchObject({ reason: expect.stringContaining('truncated') });
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
});
