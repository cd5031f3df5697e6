import {
  normalizeCheckRequest,
  normalizeHost,
  normalizePath,
  type NormalizedRequest,
} from '../../src/request/normalize';
import { UNDECODABLE, type CheckInput } from '../../src/envoy/check-input';
import { envoyCheckRequest } from '../helpers/requests';

describe('normalise stage', () => {
  test('reads host without port, method, path without query, principal, request id', () => {
    const r = normalizeCheckRequest(
      envoyCheckRequest({
        principal: 'spiffe://a/b',
        host: 'Orders.Shop:8080',
        path: '/v1/orders?token=secret#x',
      }),
    );
    expect(r).toMatchObject({
      ok: true,
      request: {
        host: 'orders.shop',
        method: 'POST',
        path: '/v1/orders',
        principal: 'spiffe://a/b',
        requestId: 'b2a7c3de-0f6a-4d0e-a1f4-5d2c7e9b8a10',
      },
    });
  });

  test('falls back to pseudo-headers when the http fields are empty', () => {
    const req = {
      attributes: {
        request: { http: { headers: { ':authority': 'orders', ':method': 'GET', ':path': '/x' } } },
      },
    };
    expect(normalizeCheckRequest(req)).toMatchObject({
      ok: true,
      request: { host: 'orders', method: 'GET', path: '/x', principal: '' },
    });
  });

  test('lists every client-sent x-gatehouse-* header, lower-cased', () => {
    const r = normalizeCheckRequest(
      envoyCheckRequest({
        headers: {
          'x-gatehouse-caller': 'spoof',
          'x-gatehouse-admin': 'yes',
          'X-Gatehouse-Role': 'root',
          'x-other': '1',
        },
      }),
    );
    expect(r.ok && [...r.request.spoofedHeaders].sort()).toEqual([
      'x-gatehouse-admin',
      'x-gatehouse-caller',
      'x-gatehouse-role',
    ]);
  });

  test('query is the raw text after ? of the original :path; the matched path never has it', () => {
    const r = normalizeCheckRequest(
      envoyCheckRequest({ path: '/v1/orders?token=a%20b&x=1#frag?y=2' }),
    );
    expect(r).toMatchObject({
      ok: true,
      request: { path: '/v1/orders', query: 'token=a%20b&x=1' },
    });
    expect(normalizeCheckRequest(envoyCheckRequest({ path: '/v1/orders' }))).toMatchObject({
      ok: true,
      request: { query: '' },
    });
    // Falls back to :path like the path does.
    const pseudo = {
      attributes: {
        request: { http: { headers: { ':authority': 'o', ':method': 'GET', ':path': '/x?a=1' } } },
      },
    };
    expect(normalizeCheckRequest(pseudo)).toMatchObject({
      ok: true,
      request: { path: '/x', query: 'a=1' },
    });
  });

  test('body: the string body, else raw bytes, else undefined; bodyPartial only for the exact "true"', () => {
    const withHttp = (
      http: Record<string, unknown>,
      headers: Record<string, string> = {},
    ): NormalizedRequest => {
      const req = envoyCheckRequest({ headers }) as {
        attributes: { request: { http: Record<string, unknown> } };
      };
      Object.assign(req.attributes.request.http, http);
      const r = normalizeCheckRequest(req);
      if (!r.ok) throw new Error(r.reason);
      return r.request;
    };
    expect(withHttp({}).body).toBeUndefined();
    expect(withHttp({ body: '{}' }).body).toBe('{}');
    const bytes = Uint8Array.from([1, 2]);
    expect(withHttp({ rawBody: bytes }).body).toBe(bytes);
    expect(withHttp({ body: 'text', rawBody: bytes }).body).toBe('text');
    expect(withHttp({ body: 42, rawBody: 'not bytes' }).body).toBeUndefined();
    expect(withHttp({ body: 'x' }, { 'x-envoy-auth-partial-body': 'true' }).bodyPartial).toBe(true);
    expect(withHttp({ body: 'x' }, { 'x-envoy-auth-partial-body': 'TRUE' }).bodyPartial).toBe(
      false,
    );
    expect(withHttp({ body: 'x' }, { 'x-envoy-auth-partial-body': 'false' }).bodyPartial).toBe(
      false,
    );
  });

  test("a caller's plain objects become null-prototype records: string values only, no inherited names", () => {
    const req = envoyCheckRequest({}) as { attributes: Record<string, Record<string, unknown>> };
    req.attributes['contextExtensions'] = { region: 'eu', n: 7 };
    req.attributes['destination']!['labels'] = { zone: 'a' };
    req.attributes['metadataContext'] = {
      filterMetadata: {
        ns: { claims: { tenant: 'a', l: [1, { x: null }], f: () => 1 } },
        bad: 'not an object',
      },
    };
    const r = normalizeCheckRequest(req);
    if (!r.ok) throw new Error(r.reason);
    expect(Object.getPrototypeOf(r.request.contextExtensions)).toBeNull();
    expect({ ...r.request.contextExtensions }).toEqual({ region: 'eu' });
    expect(r.request.contextExtensions['constructor']).toBeUndefined();
    expect({ ...r.request.destinationLabels }).toEqual({ zone: 'a' });
    expect(JSON.parse(JSON.stringify(r.request.metadata))).toEqual({
      ns: { claims: { tenant: 'a', l: [1, { x: null }], f: null } },
      bad: {},
    });
    expect(
      Object.getPrototypeOf((r.request.metadata['ns'] as Record<string, unknown>)['claims']),
    ).toBeNull();
  });

  test("a caller's metadata nested past 32 levels is malformed", () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 33; i++) deep = { a: deep };
    const req = envoyCheckRequest({}) as { attributes: Record<string, unknown> };
    req.attributes['metadataContext'] = { filterMetadata: { ns: deep } };
    expect(normalizeCheckRequest(req)).toMatchObject({
      ok: false,
      reason: 'metadata nests too deeply',
    });
    (req.attributes['metadataContext'] as { filterMetadata: { ns: unknown } }).filterMetadata.ns = (
      deep as { a: unknown }
    ).a;
    expect(normalizeCheckRequest(req).ok).toBe(true);
  });

  test('a TCP check has no query, body or HTTP-side inputs: empty values, never undefined records', () => {
    const tcp = {
      attributes: {
        source: { principal: 'spiffe://a/b' },
        destination: { principal: 'spiffe://shop.example/ns/db/sa/pg', labels: { region: 'eu' } },
        contextExtensions: { x: 'y' },
      },
    };
    const r = normalizeCheckRequest(tcp);
    expect(r).toMatchObject({
      ok: true,
      request: { kind: 'tcp', query: '', body: undefined, bodyPartial: false },
    });
    if (!r.ok) return;
    for (const record of [
      r.request.contextExtensions,
      r.request.destinationLabels,
      r.request.metadata,
    ]) {
      expect(Object.keys(record)).toEqual([]);
      expect(Object.isFrozen(record)).toBe(true);
    }
  });

  test.each([
    [undefined, 'no HTTP request attributes'],
    [null, 'no HTTP request attributes'],
    ['garbage', 'no HTTP request attributes'],
    [{}, 'no HTTP request attributes'],
    [{ attributes: {} }, 'no HTTP request attributes'],
    [{ attributes: { request: {} } }, 'no HTTP request attributes'],
    [{ attributes: { request: { http: {} } } }, 'no host'],
    [{ attributes: { request: { http: { host: 'a' } } } }, 'no valid method'],
    [{ attributes: { request: { http: { host: 'a', method: 'GET' } } } }, 'no path'],
    [
      { attributes: { request: { http: { host: 'a', method: 'G ET', path: '/' } } } },
      'no valid method',
    ],
    [
      {
        attributes: {
          request: { http: { host: 'a', method: 'GET', path: '/' + 'x'.repeat(9000) } },
        },
      },
      'too long',
    ],
    [
      { attributes: { request: { http: { host: 'a'.repeat(2000), method: 'GET', path: '/' } } } },
      'too long',
    ],
    [{ attributes: { request: { http: { host: 7, method: ['GET'], path: {} } } } }, 'no host'],
    [UNDECODABLE, 'could not be decoded'],
  ])('malformed %#: %s', (input, reason) => {
    // Each input's type is the attack: a producer may hand over anything.
    const r = normalizeCheckRequest(input as CheckInput);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(reason);
  });

  test.each([
    ['orders:8080', 'orders'],
    ['ORDERS.shop.', 'orders.shop'],
    ['[::1]:8443', '[::1]'],
    ['[2001:db8::1]', '[2001:db8::1]'],
    ['10.0.0.1:80', '10.0.0.1'],
  ])('host %s → %s', (raw, host) => expect(normalizeHost(raw)).toBe(host));

  test.each([
    ['/v1/orders', '/v1/orders'],
    ['/%61dmin/x', '/admin/x'],
    ['/v1/%7euser', '/v1/~user'],
    ['/v1/a%20b', '/v1/a%20b'],
    ['/v1/a b', { error: 'space' }],
    ['/v1/a%c3%a9', '/v1/a%C3%A9'],
    ['/v1/%2e%2e/admin', { error: "'.' or '..'" }],
    ['/v1/../admin', { error: "'.' or '..'" }],
    ['/v1/./x', { error: "'.' or '..'" }],
    ['/v1/..', { error: "'.' or '..'" }],
    ['/v1/..x/a', '/v1/..x/a'],
    ['/v1/a%2fb', { error: 'encoded slash' }],
    ['/v1/a%5Cb', { error: 'encoded slash' }],
    ['/v1/a%00', { error: 'encoded slash' }],
    ['/v1/a\\b', { error: 'backslash' }],
    ['/v1/%zz', { error: 'invalid percent' }],
    ['/v1/%4', { error: 'invalid percent' }],
    ['*', { error: "start with '/'" }],
    ['orders.shop:443', { error: "start with '/'" }],
  ])('path %j', (raw, expected) => {
    const result = normalizePath(raw);
    if (typeof expected === 'string') expect(result).toBe(expected);
    else expect((result as { error: string }).error).toContain(expected.error);
  });
});
