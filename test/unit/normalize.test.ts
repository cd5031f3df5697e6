import { normalizeCheckRequest, normalizeHost, normalizePath, UNDECODABLE } from '../../src/request/normalize';
import { envoyCheckRequest } from '../helpers/requests';

describe('normalise stage', () => {
  test('reads host without port, method, path without query, principal, request id', () => {
    const r = normalizeCheckRequest(envoyCheckRequest({ principal: 'spiffe://a/b', host: 'Orders.Shop:8080', path: '/v1/orders?token=secret#x' }));
    expect(r).toMatchObject({ ok: true, request: { host: 'orders.shop', method: 'POST', path: '/v1/orders', principal: 'spiffe://a/b', requestId: 'b2a7c3de-0f6a-4d0e-a1f4-5d2c7e9b8a10' } });
  });

  test('falls back to pseudo-headers when the http fields are empty', () => {
    const req = { attributes: { request: { http: { headers: { ':authority': 'orders', ':method': 'GET', ':path': '/x' } } } } };
    expect(normalizeCheckRequest(req)).toMatchObject({ ok: true, request: { host: 'orders', method: 'GET', path: '/x', principal: '' } });
  });

  test('lists every client-sent x-gatehouse-* header, lower-cased', () => {
    const r = normalizeCheckRequest(
      envoyCheckRequest({ headers: { 'x-gatehouse-caller': 'spoof', 'x-gatehouse-admin': 'yes', 'X-Gatehouse-Role': 'root', 'x-other': '1' } }),
    );
    expect(r.ok && [...r.request.spoofedHeaders].sort()).toEqual(['x-gatehouse-admin', 'x-gatehouse-caller', 'x-gatehouse-role']);
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
    [{ attributes: { request: { http: { host: 'a', method: 'G ET', path: '/' } } } }, 'no valid method'],
    [{ attributes: { request: { http: { host: 'a', method: 'GET', path: '/' + 'x'.repeat(9000) } } } }, 'too long'],
    [{ attributes: { request: { http: { host: 'a'.repeat(2000), method: 'GET', path: '/' } } } }, 'too long'],
    [{ attributes: { request: { http: { host: 7, method: ['GET'], path: {} } } } }, 'no host'],
    [UNDECODABLE, 'could not be decoded'],
  ])('malformed %#: %s', (input, reason) => {
    const r = normalizeCheckRequest(input);
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
