import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from 'jose';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readTrustBundle, type TrustBundle } from '../../src/identity/trust-bundle';
import type { Decision } from '../../src/pipeline/decision';
import { DecisionEngine } from '../../src/pipeline/engine';
import type { PolicySet } from '../../src/policy/types';
import { MemoryBucketStore } from '../../src/ratelimit/memory-store';
import { toCheckResponse } from '../../src/respond/check-response';
import { spawnServe } from '../helpers/cli';
import { loadSet } from '../helpers/engine';
import { checkClient } from '../helpers/grpc-client';
import { TestCa } from '../helpers/pki';
import { policyDir, servicePolicy } from '../helpers/policies';
import { envoyCheckRequest } from '../helpers/requests';
import { waitFor } from '../helpers/wait';

const dir = mkdtempSync(path.join(tmpdir(), 'gh-jwt-'));
const CALLER = 'spiffe://shop.example/ns/jobs/sa/reporter';

interface Keys {
  privateKey: KeyLike;
  kid: string;
}

async function bundleFile(domain: string, keys: Keys[]): Promise<string> {
  const jwks = {
    keys: await Promise.all(
      keys.map(async (k) => ({
        ...(await exportJWK(await publicOf(k))),
        use: 'jwt-svid',
        kid: k.kid,
      })),
    ),
  };
  const file = path.join(dir, `${domain}.json`);
  writeFileSync(file, JSON.stringify({ ...jwks, spiffe_sequence: 1, spiffe_refresh_hint: 300 }));
  return file;
}
const publics = new Map<KeyLike, KeyLike>();
const publicOf = async (k: Keys): Promise<KeyLike> => publics.get(k.privateKey)!;
async function newKey(kid: string, alg = 'ES256'): Promise<Keys> {
  const pair = await generateKeyPair(alg);
  publics.set(pair.privateKey, pair.publicKey);
  return { privateKey: pair.privateKey, kid };
}

function token(
  keys: Keys,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
  alg = 'ES256',
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: CALLER, aud: ['orders'], exp: now + 300, iat: now, ...claims })
    .setProtectedHeader({ alg, kid: keys.kid, typ: 'JWT', ...header })
    .sign(keys.privateKey);
}

describe('JWT-SVIDs', () => {
  let shopKey: Keys;
  let otherKey: Keys;
  let bundles: Map<string, TrustBundle>;
  let set: PolicySet;

  beforeAll(async () => {
    shopKey = await newKey('shop-1');
    otherKey = await newKey('other-1');
    bundles = new Map([
      [
        'shop.example',
        readTrustBundle('shop.example', await bundleFile('shop.example', [shopKey])),
      ],
      [
        'other.example',
        readTrustBundle('other.example', await bundleFile('other.example', [otherKey])),
      ],
    ]);
    set = await loadSet(
      policyDir({
        'p.yaml': servicePolicy(
          'reports',
          ['reports'],
          `    - name: export
      paths: [/export]
      allow: [spiffe://shop.example/ns/jobs/**]
      stripToken: true
    - name: admin
      paths: [/admin]
      allow: [spiffe://shop.example/ns/jobs/**]
      require: mtls`,
        ),
      }),
    );
  });

  async function decide(
    auth: string | undefined,
    options: { path?: string; principal?: string; audience?: string } = {},
  ): Promise<Decision> {
    let last: Decision | undefined;
    const engine = new DecisionEngine({
      policies: () => set,
      identity: {
        trustDomains: new Set(['shop.example', 'other.example']),
        trustXfcc: false,
        trustBundles: bundles,
        jwt: { audience: options.audience ?? 'orders', leewaySeconds: 5 },
      },
      store: new MemoryBucketStore(),
      sink: { record: (d) => void (last = d) },
    });
    await engine.decide(
      envoyCheckRequest({
        host: 'reports',
        path: options.path ?? '/export',
        method: 'GET',
        ...(options.principal ? { principal: options.principal } : {}),
        headers: auth ? { authorization: auth } : {},
      }),
    );
    return last!;
  }

  test('a valid JWT-SVID identifies the caller; stripToken removes it upstream', async () => {
    const jwt = await token(shopKey);
    const d = await decide(`Bearer ${jwt}`);
    expect(d).toMatchObject({ allowed: true, caller: CALLER, identitySource: 'jwt' });
    expect(toCheckResponse(d).okResponse!.headersToRemove).toEqual(['authorization']);
    expect(JSON.stringify(d)).not.toContain(jwt);
  });

  test.each<[string, () => Promise<string>, string]>([
    [
      'alg none',
      async () =>
        `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'shop-1' })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub: CALLER, aud: 'orders', exp: 9999999999 })).toString('base64url')}.`,
      "algorithm 'none' is not accepted",
    ],
    [
      'HMAC',
      async () =>
        new SignJWT({ sub: CALLER, aud: 'orders', exp: 9999999999 })
          .setProtectedHeader({ alg: 'HS256', kid: 'shop-1' })
          .sign(new TextEncoder().encode('a-shared-secret-of-32-bytes-long!')),
      'HMAC-signed tokens are not accepted',
    ],
    ['no kid', async () => token(shopKey, {}, { kid: undefined }), 'token has no kid'],
    [
      'an unknown kid',
      async () => token({ ...shopKey, kid: 'rotated-away' }),
      'kid is not a JWT-SVID key',
    ],
    [
      'expired',
      async () => token(shopKey, { exp: Math.floor(Date.now() / 1000) - 60 }),
      'token has expired',
    ],
    [
      'not yet valid',
      async () => token(shopKey, { nbf: Math.floor(Date.now() / 1000) + 120 }),
      'not yet valid',
    ],
    ['no exp', async () => token(shopKey, { exp: undefined }), 'no exp'],
    [
      'the wrong audience',
      async () => token(shopKey, { aud: ['payments'] }),
      'audience does not match',
    ],
    [
      'a sub that is not a SPIFFE ID',
      async () => token(shopKey, { sub: 'reporter@shop.example' }),
      'token sub',
    ],
    [
      'a sub that names a trust domain, not a workload',
      async () => token(shopKey, { sub: 'spiffe://shop.example' }),
      'token sub has no path',
    ],
    [
      "signed by another trust domain's key",
      async () => token({ ...otherKey, kid: 'shop-1' }),
      'signature does not verify',
    ],
    ['a kid of another trust domain', async () => token(otherKey), 'kid is not a JWT-SVID key'],
    ['a bad typ', async () => token(shopKey, {}, { typ: 'at+jwt' }), 'typ must be JWT or JOSE'],
    ['malformed', async () => 'not.a.jwt', 'not a well-formed JWT'],
    ['oversized', async () => 'a'.repeat(9000), 'too large'],
  ])('rejects %s with 401 and a precise reason', async (_name, make, reason) => {
    const jwt = await make();
    const d = await decide(`Bearer ${jwt}`);
    expect(d).toMatchObject({
      allowed: false,
      status: 401,
      code: 'invalid_identity',
      identitySource: 'jwt',
    });
    expect(d.reason).toContain(reason);
    expect(d.reason).not.toContain(jwt.slice(0, 20));
  });

  test('a token from a domain that is not trusted, on an mTLS call, and require: mtls', async () => {
    expect(
      await decide(`Bearer ${await token(shopKey)}`, { audience: 'something-else' }),
    ).toMatchObject({ status: 401, reason: expect.stringContaining('audience') });
    // With an mTLS principal, the bearer token is the app's business and is not read.
    expect(await decide('Bearer not-even-a-jwt', { principal: CALLER })).toMatchObject({
      allowed: true,
      identitySource: 'principal',
    });
    expect(await decide(`Bearer ${await token(shopKey)}`, { path: '/admin' })).toMatchObject({
      allowed: false,
      status: 403,
      code: 'mtls_required',
    });
    expect(await decide(undefined, { path: '/admin', principal: CALLER })).toMatchObject({
      allowed: true,
    });
  });

  test("a rule audience: the token must carry that rule's aud, other rules keep the default", async () => {
    const ruleSet = await loadSet(
      policyDir({
        'p.yaml': servicePolicy(
          'reports',
          ['reports'],
          `    - name: export
      paths: [/export]
      allow: [spiffe://shop.example/ns/jobs/**]
      audience: reports-export
    - name: list
      paths: [/list]
      allow: [spiffe://shop.example/ns/jobs/**]`,
        ),
      }),
    );
    const decideOn = async (jwt: string, path: string): Promise<Decision> => {
      let last: Decision | undefined;
      const engine = new DecisionEngine({
        policies: () => ruleSet,
        identity: {
          trustDomains: new Set(['shop.example']),
          trustXfcc: false,
          trustBundles: bundles,
          jwt: { audience: 'orders', leewaySeconds: 5 },
        },
        store: new MemoryBucketStore(),
        sink: { record: (d) => void (last = d) },
      });
      await engine.decide(
        envoyCheckRequest({
          host: 'reports',
          path,
          method: 'GET',
          headers: { authorization: `Bearer ${jwt}` },
        }),
      );
      return last!;
    };
    const forExport = await token(shopKey, { aud: ['reports-export'] });
    const forOrders = await token(shopKey, { aud: ['orders'] });
    const forNeither = await token(shopKey, { aud: ['billing'] });
    expect(await decideOn(forExport, '/export')).toMatchObject({
      allowed: true,
      rule: { name: 'export' },
    });
    // A token for the server's audience is not one for the export rule, and the reverse.
    expect(await decideOn(forOrders, '/export')).toMatchObject({
      allowed: false,
      status: 401,
      reason: expect.stringContaining("does not include 'reports-export'"),
    });
    expect(await decideOn(forExport, '/list')).toMatchObject({
      allowed: false,
      status: 401,
      reason: expect.stringContaining("does not include 'orders'"),
    });
    expect(await decideOn(forOrders, '/list')).toMatchObject({
      allowed: true,
      rule: { name: 'list' },
    });
    expect(await decideOn(forNeither, '/export')).toMatchObject({
      allowed: false,
      status: 401,
      reason: expect.stringContaining('aud'),
    });
  });

  test('the JWT keys come from a bundle endpoint over real TLS (https_web profile), verified against the Web PKI roots', async () => {
    const ca = new TestCa('bundle-endpoint');
    const tls = ca.issue('bundle-server', 'DNS:localhost,IP:127.0.0.1', [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
    ]);
    const jwks = readFileSync(await bundleFile('shop.example', [shopKey]), 'utf8');
    const endpoint = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(jwks);
    });
    await new Promise<void>((r) => endpoint.listen(0, '127.0.0.1', r));
    const url = `https://localhost:${(endpoint.address() as { port: number }).port}/bundle`;
    const policies = policyDir({
      'p.yaml': servicePolicy(
        'reports',
        ['reports'],
        `    - name: export
      allow: [spiffe://shop.example/ns/jobs/**]`,
      ),
    });
    const args = [
      '--policies',
      policies,
      '--trust-domain',
      'shop.example',
      '--trust-bundle',
      `shop.example=${url}`,
      '--jwt-audience',
      'orders',
      '--audit-log',
      '/dev/null',
    ];
    // The endpoint's CA is a root only for the server that is told so: the way a private Web PKI is trusted.
    const server = await spawnServe(args, { NODE_EXTRA_CA_CERTS: ca.cert });
    const client = checkClient(server.port);
    try {
      const jwt = await token(shopKey);
      let code = -1;
      for (let i = 0; i < 50 && code !== 0; i++) {
        const r = await client.check(
          envoyCheckRequest({
            host: 'reports',
            path: '/x',
            headers: { authorization: `Bearer ${jwt}` },
          }),
        );
        code = r.status?.code ?? 0;
        if (code !== 0) await new Promise((res) => setTimeout(res, 100));
      }
      expect(code).toBe(0);
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      await server.exited;
    }
    // Without that root, the TLS handshake fails: no keys, so the same token is a 401.
    const untrusting = await spawnServe(args);
    const client2 = checkClient(untrusting.port);
    try {
      await waitFor(
        () => untrusting.stderr().includes('trust bundle refresh failed'),
        'the bundle fetch to fail',
        5000,
      );
      const r = await client2.check(
        envoyCheckRequest({
          host: 'reports',
          path: '/x',
          headers: { authorization: `Bearer ${await token(shopKey)}` },
        }),
      );
      expect(r.status.code).toBe(16);
      expect(untrusting.stderr()).toContain('trust bundle');
    } finally {
      client2.close();
      untrusting.child.kill('SIGTERM');
      await untrusting.exited;
      endpoint.closeAllConnections();
      await new Promise((r) => endpoint.close(r));
    }
  });

  test('end to end over gRPC with --trust-bundle and --jwt-audience; the token is never logged', async () => {
    const audit = path.join(dir, 'audit.log');
    const server = await spawnServe([
      '--policies',
      policyDir({
        'p.yaml': servicePolicy(
          'reports',
          ['reports'],
          `    - name: export
      allow: [spiffe://shop.example/ns/jobs/**]`,
        ),
      }),
      '--trust-domain',
      'shop.example',
      '--trust-bundle',
      `shop.example=${await bundleFile('shop.example', [shopKey])}`,
      '--jwt-audience',
      'orders',
      '--audit-log',
      audit,
      '--log-level',
      'trace',
      '--http-port',
      '0',
    ]);
    const client = checkClient(server.port);
    try {
      const jwt = await token(shopKey);
      const ok = await client.check(
        envoyCheckRequest({
          host: 'reports',
          path: '/x',
          headers: { authorization: `Bearer ${jwt}` },
        }),
      );
      expect(ok.status?.code ?? 0).toBe(0);
      const bad = await client.check(
        envoyCheckRequest({
          host: 'reports',
          path: '/x',
          headers: { authorization: `Bearer ${await token(shopKey, { aud: ['x'] })}` },
        }),
      );
      expect(bad.status.code).toBe(16);
      // The HTTP authorization mode (Envoy's http_service) reads the same JWT-SVID.
      const viaHttp = async (
        bearer: string,
      ): Promise<{ status: number; caller: string | undefined; body: string }> =>
        new Promise((resolve, reject) => {
          const req = http.request(
            {
              host: '127.0.0.1',
              port: server.httpPort!,
              path: '/x',
              headers: { host: 'reports', authorization: `Bearer ${bearer}` },
              agent: false,
            },
            (res) => {
              let body = '';
              res.on('data', (c: Buffer) => (body += c));
              res.on('end', () =>
                resolve({
                  status: res.statusCode!,
                  caller: res.headers['x-gatehouse-caller'] as string | undefined,
                  body,
                }),
              );
            },
          );
          req.on('error', reject);
          req.end();
        });
      expect(await viaHttp(jwt)).toMatchObject({ status: 200, caller: CALLER });
      const httpBad = await viaHttp(await token(shopKey, { aud: ['x'] }));
      expect(httpBad.status).toBe(401);
      expect(httpBad.body).not.toContain(jwt.split('.')[2]);
      client.close();
      server.child.kill('SIGTERM');
      await server.exited;
      const everything = readFileSync(audit, 'utf8') + server.stderr() + JSON.stringify(bad);
      expect(everything).not.toContain(jwt.split('.')[2]);
      expect(everything).toContain('"identity_source":"jwt"');
    } finally {
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
    }
  });
});
