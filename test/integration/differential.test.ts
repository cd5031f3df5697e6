import * as net from 'node:net';
import * as querystring from 'node:querystring';
import type { DecisionEngine } from '../../src/pipeline/engine';
import { engineFor } from '../helpers/engine';
import { policyDir, servicePolicy } from '../helpers/policies';
import { startNginx, type NginxProcess } from '../helpers/nginx';
import { EXPORTER } from '../helpers/requests';

/*
 * Differential test: a corpus of tricky paths, queries and bodies is decided by Gatehouse and
 * read by reference readers that run here (nginx's own normalisation, Node's URL and
 * querystring, a Tomcat-style path reader, and JSON readers that keep the first or the last of
 * a repeated key or bind names regardless of case). Gatehouse must never allow a request that
 * some reader maps to a refused route or a refused field. Each corpus also holds cases that do
 * reach the refused route under some reader, so the property is tested, not vacuous.
 */

const WEB = 'spiffe://shop.example/ns/frontend/sa/web';

const POLICIES = {
  'api.yaml': servicePolicy(
    'api',
    ['api'],
    `
    - name: admin
      paths: [/admin/**, /internal]
      deny: [spiffe://shop.example/**]
    - name: debug
      methods: [GET]
      paths: [/search]
      deny: [spiffe://shop.example/**]
      when: '"debug" in request.query'
    - name: everything-else
      paths: ['/**']
      allow: [${WEB}, ${EXPORTER}]
`,
  ),
  'exporter.yaml': `apiVersion: gatehouse/v1
kind: WorkloadPolicy
metadata: { name: exporter }
spec:
  workload: ${EXPORTER}
  refuse:
    - { name: no-card-data, fields: [card.number] }
`,
};

let engine: DecisionEngine;
beforeAll(async () => {
  ({ engine } = await engineFor(policyDir(POLICIES)));
});

async function allowed(
  method: string,
  rawPath: string,
  caller: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<boolean> {
  const decision = await engine.decide({
    attributes: {
      source: { principal: caller },
      request: {
        http: {
          method,
          path: rawPath,
          host: 'api',
          headers: { ':authority': 'api', ':method': method, ':path': rawPath, ...headers },
          ...(body !== undefined ? { body } : {}),
        },
      },
    },
  });
  return decision.allowed;
}

/** A path reader: the path the upstream routes on, or null where it rejects the request. */
type PathReader = (rawPath: string) => string | null | Promise<string | null>;

const isRefusedRoute = (p: string): boolean =>
  p === '/internal' || p === '/admin' || p.startsWith('/admin/');

function decodeOnce(p: string): string | null {
  try {
    return decodeURIComponent(p);
  } catch {
    return null;
  }
}

/** WHATWG URL (Node's URL): resolves dot segments and '\' (special scheme), then one decode. */
const nodeUrl: PathReader = (rawPath) => {
  try {
    const pathname = new URL(rawPath, 'http://api').pathname;
    return decodeOnce(pathname);
  } catch {
    return null;
  }
};

/** Tomcat and Jetty: strip ';' parameters from each segment, merge '//', decode, resolve dots. */
const servletContainer: PathReader = (rawPath) => {
  const noQuery = rawPath.split(/[?#]/, 1)[0]!;
  const stripped = noQuery
    .split('/')
    .map((segment) => segment.split(';', 1)[0]!)
    .join('/');
  const decoded = decodeOnce(stripped.replace(/\/{2,}/g, '/'));
  if (decoded === null) return null;
  const out: string[] = [];
  for (const segment of decoded.split('/').slice(1)) {
    if (segment === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else if (segment !== '.') out.push(segment);
  }
  return `/${out.join('/')}`;
};

describe('paths', () => {
  const corpus = [
    '/admin/users',
    '/admin',
    '/internal',
    '/public/a',
    '/public/',
    '/admin;jsessionid=1/users',
    '/admin;/users',
    '/internal;x',
    '/internal;',
    '/public/..;/admin/users',
    '/public;x/../admin/users',
    '//admin/users',
    '/admin//users',
    '///internal',
    '/public//../admin/users',
    '/%61dmin/users',
    '/adm%69n/users',
    '/%2561dmin/users',
    '/admin%2Fusers',
    '/admin%2fusers',
    '/admin%252Fusers',
    '/admin%3Busers',
    '/admin%3b/users',
    '/internal%3B',
    '/internal%23x',
    '/internal%3Fx',
    '/internal?x=1',
    '/internal#frag',
    '/public/../admin/users',
    '/public/%2e%2e/admin/users',
    '/public/.%2e/admin',
    '/./admin/users',
    '/admin/./users',
    '/public/%2E/../internal',
    '/public\\..\\admin',
    '/public%5C..%5Cadmin',
    '/public%00/../admin',
    '/ADMIN/users',
    '/internal/',
    '/internal.',
    '/internal%20',
    '/admin%u0073',
    '/%E2%80%A8admin',
    '/public/%2e%2e%2fadmin',
    '/public;/%2e%2e/internal',
  ];
  let nginx: NginxProcess | undefined;
  let nginxPort = 0;

  beforeAll(async () => {
    // nginx answers with $uri: the request path as its own location matching reads it.
    nginx = await startNginx({
      name: 'nginx-diff',
      http: (port) => `
  server {
    listen 127.0.0.1:${port};
    location / { return 200 "$uri"; }
  }`,
    });
    nginxPort = nginx.port;
    expect(await viaNginx('/')).toBe('/');
  }, 20_000);

  afterAll(async () => {
    await nginx?.stop();
  });

  /** The raw request line goes out byte for byte (no client-side normalisation); null on an nginx error. */
  function viaNginx(rawPath: string): Promise<string | null> {
    return new Promise((resolve) => {
      const socket = net.connect(nginxPort, '127.0.0.1');
      let reply = '';
      socket.setTimeout(5000, () => socket.destroy());
      socket.on('connect', () =>
        socket.write(`GET ${rawPath} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n`),
      );
      socket.on('data', (b: Buffer) => (reply += b.toString('latin1')));
      socket.on('error', () => resolve(null));
      socket.on('close', () => {
        const status = /^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1];
        resolve(status === '200' ? reply.slice(reply.indexOf('\r\n\r\n') + 4) : null);
      });
    });
  }

  test('no path that a reader routes to a refused route is allowed', async () => {
    const readers: Record<string, PathReader> = {
      nginx: viaNginx,
      'node URL': nodeUrl,
      'tomcat/jetty': servletContainer,
    };
    const bypasses: string[] = [];
    let reachingRefused = 0;
    for (const rawPath of corpus) {
      const gatehouseAllows = await allowed('GET', rawPath, WEB);
      for (const [name, read] of Object.entries(readers)) {
        const routed = await read(rawPath);
        if (routed === null || !isRefusedRoute(routed)) continue;
        reachingRefused++;
        if (gatehouseAllows) bypasses.push(`${rawPath} → ${name} reads ${routed}`);
      }
    }
    expect(bypasses).toEqual([]);
    expect(reachingRefused).toBeGreaterThan(40);
  }, 60_000);

  test('nginx itself sees the parameters and empty segments Gatehouse refuses as their own paths', async () => {
    expect(await viaNginx('//admin/users')).toBe('/admin/users');
    expect(await viaNginx('/public/../admin/users')).toBe('/admin/users');
    expect(await viaNginx('/%61dmin/users')).toBe('/admin/users');
  });
});

describe('queries a condition reads', () => {
  const hundred = Array.from({ length: 100 }, (_, i) => `p${i}=1`).join('&');
  const thousand = Array.from({ length: 1000 }, (_, i) => `p${i}=1`).join('&');
  const corpus = [
    'q=1',
    'debug=1',
    'DEBUG=1',
    'debug',
    'debug=',
    '&&debug',
    'x=1&debug=1',
    '%64ebug=1',
    'de%62ug=1',
    'debug=1%',
    'x=%zz&debug=1',
    'debug%=1',
    `${hundred}&debug=1`,
    `${thousand}&debug=1`,
    'debug%00=1',
    'debug+=1',
    '+debug=1',
    'de+bug=1',
    'debug%3D1',
    'x=1%26debug=1',
    'x=1;debug=1',
    '?debug=1',
    'debug=%E0%A4',
    'debug=1#x',
    'x#&debug=1',
    'x=1&debug=1&debug=2',
    '%E2%80%A8debug=1',
  ];

  const readers: Record<string, (raw: string) => string[]> = {
    querystring: (raw) => Object.keys(querystring.parse(raw)),
    URLSearchParams: (raw) => [...new URLSearchParams(raw).keys()],
  };

  test('no query in which a reader finds the refused name is allowed', async () => {
    const bypasses: string[] = [];
    let reachingRefused = 0;
    for (const query of corpus) {
      const gatehouseAllows = await allowed('GET', `/search?${query}`, WEB);
      const raw = query.split('#', 1)[0]!;
      for (const [name, read] of Object.entries(readers)) {
        if (!read(raw).includes('debug')) continue;
        reachingRefused++;
        if (gatehouseAllows) bypasses.push(`?${query.slice(0, 60)} → ${name} reads debug`);
      }
    }
    expect(bypasses).toEqual([]);
    expect(reachingRefused).toBeGreaterThan(15);
  });
});

/** A JSON member as a reader saw it, in order, duplicates kept. */
type Members = Array<[string, unknown]>;

/**
 * A strict JSON reader that keeps every member of an object, duplicates included, so the
 * first-wins, last-wins and case-insensitive readings can all be taken from one parse.
 */
function readAllMembers(text: string): unknown {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const value = (): unknown => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const members: Members = [];
      ws();
      if (text[i] === '}') return (i++, { members });
      for (;;) {
        ws();
        const key = string();
        ws();
        if (text[i++] !== ':') throw new Error('expected :');
        members.push([key, value()]);
        ws();
        const next = text[i++];
        if (next === '}') return { members };
        if (next !== ',') throw new Error('expected ,');
      }
    }
    if (c === '[') {
      i++;
      const items: unknown[] = [];
      ws();
      if (text[i] === ']') return (i++, items);
      for (;;) {
        items.push(value());
        ws();
        const next = text[i++];
        if (next === ']') return items;
        if (next !== ',') throw new Error('expected ,');
      }
    }
    if (c === '"') return string();
    const literal = /^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(
      text.slice(i, i + 64),
    )?.[0];
    if (!literal) throw new Error('unexpected');
    i += literal.length;
    return JSON.parse(literal) as unknown;
  };
  const string = (): string => {
    if (text[i] !== '"') throw new Error('expected string');
    let j = i + 1;
    while (text[j] !== '"') {
      if (j >= text.length) throw new Error('unterminated');
      j += text[j] === '\\' ? 2 : 1;
    }
    const s = JSON.parse(text.slice(i, j + 1)) as string;
    i = j + 1;
    return s;
  };
  const result = value();
  ws();
  if (i !== text.length) throw new Error('trailing text');
  return result;
}

/** Does any reading (first, last or case-insensitive binding of a key) reach `path`? */
function someReaderFinds(node: unknown, path: readonly string[]): boolean {
  if (path.length === 0) return true;
  if (Array.isArray(node)) return node.some((item) => someReaderFinds(item, path));
  const members = (node as { members?: Members } | null)?.members;
  if (!members) return false;
  return members.some(
    ([key, value]) => key.toLowerCase() === path[0] && someReaderFinds(value, path.slice(1)),
  );
}

describe('bodies with a refused field', () => {
  const json = { 'content-type': 'application/json' };
  const corpus: Array<[string, Record<string, string>]> = [
    ['{"card":{"number":"4111"}}', json],
    ['{"card":{"brand":"visa"}}', json],
    ['{}', json],
    ['{"card":{"number":"4111"},"card":{}}', json],
    ['{"card":{},"card":{"number":"4111"}}', json],
    ['{"Card":{"Number":"4111"}}', json],
    ['{"CARD":{"nUmBeR":"4111"}}', json],
    ['{"card":{"num\\u0062er":"4111"}}', json],
    ['{"\\u0063ard":{"number":"4111"},"card":{}}', json],
    ['{"card":[{"number":"4111"}]}', json],
    ['[{"card":{"number":"4111"}}]', json],
    ['{"card":{"number":"4111"}} ', json],
    ['{"x":"{\\"card\\":{\\"number\\":1}}"}', json],
    ['{"card":{"ſumber":1}}', json],
    ['{"card":{"number":"4111"}}', { 'content-type': 'text/plain' }],
    ['{"card":{"number":"4111"}}', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['{"card":{"number":"4111"}}', {}],
    ['{"card":{"number":"4111"}}', { 'content-type': 'application/vnd.api+json' }],
    [`${'{"a":'.repeat(40)}{"card":{"number":1}}${'}'.repeat(40)}`, json],
    ['{"card":{"number":"4111"}', json],
    ['\ufeff{"card":{"number":"4111"}}', json],
    ['{"card":{"number":"4111"},"card":{"number":null}}', json],
    ['{"a":1,"A":{"card":{"number":1}}}', json],
  ];

  /** Form readers (PHP, Rails, qs) read `card[number]` as the nested field. */
  const formFinds = (body: string): boolean =>
    Object.keys(querystring.parse(body)).some((key) =>
      ['card[number]', 'card.number'].includes(key.toLowerCase()),
    );

  test('no body in which a reader finds the refused field is allowed', async () => {
    const bypasses: string[] = [];
    let reachingRefused = 0;
    for (const [body, headers] of corpus) {
      const gatehouseAllows = await allowed('POST', '/orders', EXPORTER, headers, body);
      let found: boolean;
      try {
        found = someReaderFinds(readAllMembers(body), ['card', 'number']);
      } catch {
        found = false; // not JSON to a strict reader
      }
      if (headers['content-type'] === 'application/x-www-form-urlencoded')
        found ||= formFinds(body);
      if (!found) continue;
      reachingRefused++;
      if (gatehouseAllows)
        bypasses.push(`${body.slice(0, 60)} (${headers['content-type'] ?? 'no type'})`);
    }
    expect(bypasses).toEqual([]);
    expect(reachingRefused).toBeGreaterThan(12);
  });

  test('a benign body is still allowed: the readers and Gatehouse agree on what is harmless', async () => {
    expect(await allowed('POST', '/orders', EXPORTER, json, '{"card":{"brand":"visa"}}')).toBe(
      true,
    );
    expect(
      await allowed('POST', '/orders', EXPORTER, json, '{"x":"{\\"card\\":{\\"number\\":1}}"}'),
    ).toBe(true);
  });
});
