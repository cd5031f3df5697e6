import * as http from 'node:http';
import pino from 'pino';
import { AdminServer, isLoopbackHost } from '../../src/admin/admin-server';

/*
 * A web page on the same host (or a DNS-rebinding page) can POST to the loopback admin port,
 * where changes need no token. What a browser cannot avoid sending, or cannot send without a
 * preflight, is what refuses it: an Origin header, a Host that names the page's site, and a
 * content type other than application/json.
 */

const CALLER = 'spiffe://shop.example/ns/orders/sa/orders';

describe('admin changes refuse what a browser sends', () => {
  const released: string[] = [];
  const admin = new AdminServer(
    {
      readiness: () => ({ checks: {}, failing: [] }),
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      policy: () => ({}),
      quarantine: {
        list: async () => [],
        release: async (caller: string) => (released.push(caller), { caller }),
      },
    },
    pino({ level: 'silent' }),
    { token: Buffer.from('0123456789abcdef-admin') },
  );
  let port = 0;
  beforeAll(async () => {
    port = await admin.listen('127.0.0.1', 0);
  });
  afterAll(() => admin.close());
  beforeEach(() => void released.splice(0));

  /** A raw request, so Host and Origin are exactly what a browser would send. */
  function release(headers: Record<string, string>): Promise<number> {
    const body = JSON.stringify({ caller: CALLER });
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/quarantine/release',
          headers: {
            host: `127.0.0.1:${port}`,
            'content-length': String(Buffer.byteLength(body)),
            ...headers,
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  test('a JSON change from loopback with a loopback Host is taken', async () => {
    expect(await release({ 'content-type': 'application/json' })).toBe(200);
    expect(
      await release({
        'content-type': 'application/json; charset=utf-8',
        host: `localhost:${port}`,
      }),
    ).toBe(200);
    expect(released).toHaveLength(2);
  });

  test.each([
    ['a text/plain form post (no preflight)', { 'content-type': 'text/plain' }, 415],
    ['no content type', {}, 415],
    [
      'an Origin header, even with JSON',
      { 'content-type': 'application/json', origin: 'http://localhost:3000' },
      403,
    ],
    [
      'Origin: null (a sandboxed page)',
      { 'content-type': 'application/json', origin: 'null' },
      403,
    ],
    [
      'a rebinding page: Host names its site',
      { 'content-type': 'application/json', host: `attacker.example:${port}` },
      403,
    ],
    [
      'a Host that only starts like loopback',
      { 'content-type': 'application/json', host: '127.0.0.1.attacker.example' },
      403,
    ],
    [
      'the token with an Origin',
      {
        'content-type': 'application/json',
        origin: 'http://x',
        authorization: 'Bearer 0123456789abcdef-admin',
      },
      403,
    ],
    [
      'the token with text/plain',
      { 'content-type': 'text/plain', authorization: 'Bearer 0123456789abcdef-admin' },
      415,
    ],
  ])('%s is refused and changes nothing', async (_name, headers, status) => {
    expect(await release(headers as Record<string, string>)).toBe(status);
    expect(released).toEqual([]);
  });

  test('the token path does not look at Host: remote operators name the server as they reach it', async () => {
    expect(
      await release({
        'content-type': 'application/json',
        host: 'gatehouse-admin.ops.svc:9193',
        authorization: 'Bearer 0123456789abcdef-admin',
      }),
    ).toBe(200);
  });

  test.each([
    ['localhost', true],
    ['LOCALHOST:9193', true],
    ['127.0.0.1', true],
    ['127.1.2.3:80', true],
    ['[::1]:9193', true],
    ['[::1]', true],
    ['', false],
    ['localhost.attacker.example', false],
    ['127.0.0.1.nip.io', false],
    ['[::2]', false],
    ['[::1]x', false],
    ['10.0.0.1', false],
  ])('isLoopbackHost(%j) is %s', (host, expected) => {
    expect(isLoopbackHost(host as string)).toBe(expected);
  });
});
