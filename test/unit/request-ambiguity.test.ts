import type { Decision } from '../../src/pipeline/decision';
import type { DecisionEngine } from '../../src/pipeline/engine';
import { checkRequestFromJson } from '../../src/envoy/proto-json';
import { MemoryQuarantineState } from '../../src/quarantine/memory';
import { engineFor } from '../helpers/engine';
import { policyDir, servicePolicy } from '../helpers/policies';
import { EXPORTER } from '../helpers/requests';

/*
 * Requests that Gatehouse and the upstream behind it could read differently. Each was allowed
 * (or decided on a part of the request only) before these checks: where a common upstream
 * could read a request otherwise, it is refused as malformed_request with a reason naming the
 * ambiguity, never decided on a guess.
 */

const WEB = 'spiffe://shop.example/ns/frontend/sa/web';

const SERVICE = servicePolicy(
  'api',
  ['api'],
  `
    - name: admin
      paths: [/admin/**, /internal]
      deny: [spiffe://shop.example/**]
    - name: no-debug
      methods: [GET]
      paths: [/search]
      allow: [${WEB}]
      when: '!("debug" in request.query)'
    - name: tenant
      methods: [GET]
      paths: [/tenant]
      allow: [${WEB}]
      when: 'request.headers[?"x-tenant"].orValue("") == "a"'
    - name: keyed
      methods: [GET]
      paths: [/keyed]
      allow: [${WEB}]
      rateLimit: { capacity: 1, refillPerSecond: 0.001, per: "header:x-api-key" }
    - name: window
      methods: [GET]
      paths: [/window]
      allow: [${WEB}]
      when: 'duration(request.headers[?"x-window"].orValue("1s")) < duration("1h")'
    - name: counts
      methods: [POST]
      paths: [/counts]
      allow: [${WEB}]
      body:
        schema: { type: object, properties: { qty: { type: integer } }, additionalProperties: { type: integer } }
    - name: sized
      methods: [POST]
      paths: [/sized]
      allow: [${WEB}]
      body: { maxBytes: 64 }
    - name: typed
      methods: [POST]
      paths: [/typed]
      allow: [${WEB}]
      body: { contentTypes: [application/json] }
    - name: everything-else
      paths: ['/**']
      allow: [${WEB}, ${EXPORTER}]
`,
);

const EXPORTER_OPT_OUT = `apiVersion: gatehouse/v1
kind: WorkloadPolicy
metadata:
  name: exporter
spec:
  workload: ${EXPORTER}
  refuse:
    - name: no-card-data
      fields: [card.number]
`;

let engine: DecisionEngine;
beforeAll(async () => {
  ({ engine } = await engineFor(
    policyDir({ 'api.yaml': SERVICE, 'exporter.yaml': EXPORTER_OPT_OUT }),
  ));
});

interface Req {
  method?: string;
  path: string;
  caller?: string;
  headers?: Record<string, string>;
  body?: string;
}

/** A CheckRequest as Envoy sends it for an HTTP/2 request: no content-length unless given. */
function check(r: Req): Record<string, unknown> {
  const method = r.method ?? 'GET';
  return {
    attributes: {
      source: { principal: r.caller ?? WEB },
      request: {
        http: {
          method,
          path: r.path,
          host: 'api',
          headers: { ':authority': 'api', ':method': method, ':path': r.path, ...r.headers },
          ...(r.body !== undefined ? { body: r.body } : {}),
        },
      },
    },
  };
}

const decide = (r: Req): Promise<Decision> => engine.decide(check(r));

async function expectMalformed(r: Req, reason: string | RegExp): Promise<void> {
  const d = await decide(r);
  expect({ allowed: d.allowed, status: d.status, code: d.code }).toEqual({
    allowed: false,
    status: 403,
    code: 'malformed_request',
  });
  expect(d.reason).toMatch(reason);
}

describe('paths: parameters and empty segments', () => {
  test('the refused route is refused and the rest allowed (the baseline the attacks step around)', async () => {
    expect(await decide({ path: '/admin/users' })).toMatchObject({
      allowed: false,
      code: 'caller_refused',
    });
    expect(await decide({ path: '/internal' })).toMatchObject({
      allowed: false,
      code: 'caller_refused',
    });
    expect(await decide({ path: '/public/a' })).toMatchObject({ allowed: true });
  });

  test.each([['/admin;jsessionid=1/users'], ['/admin;/users'], ['/internal;x'], ['/public;x']])(
    "';' parameters are refused: %s",
    async (path) => {
      await expectMalformed({ path }, /';' parameter/);
    },
  );

  test.each([['/admin%3B/users'], ['/internal%3bx']])(
    "an encoded ';' is refused too: %s",
    async (path) => {
      await expectMalformed({ path }, /encoded slash, backslash, ';' or NUL/);
    },
  );

  test.each([['//admin/users'], ['/admin//users'], ['/public//'], ['//']])(
    'empty segments are refused: %s',
    async (path) => {
      await expectMalformed({ path }, /empty segment/);
    },
  );
});

describe('queries a condition reads', () => {
  test('the condition sees the pairs it is about', async () => {
    expect(await decide({ path: '/search?q=1' })).toMatchObject({
      allowed: true,
      rule: { name: 'no-debug' },
    });
    expect((await decide({ path: '/search?q=1&debug=1' })).rule?.name).not.toBe('no-debug');
  });

  test('a pair past the 100th is not skipped: the query is refused', async () => {
    const pairs = Array.from({ length: 100 }, (_, i) => `p${i}=1`).join('&');
    await expectMalformed(
      { path: `/search?${pairs}&debug=1` },
      /more than 100 pairs.*rule no-debug/,
    );
  });

  test.each([['debug=1%'], ['q=%zz&debug=1'], ['debug%=1']])(
    'an undecodable escape is not skipped: the query is refused: %s',
    async (query) => {
      await expectMalformed({ path: `/search?${query}` }, /does not percent-decode/);
    },
  );

  test('a route without a condition never reads the query, so its odd queries are left alone', async () => {
    expect(await decide({ path: '/public?debug=1%' })).toMatchObject({ allowed: true });
  });
});

describe('header names and repeated headers', () => {
  test('mixed-case names are lower-cased when decoded, from the wire and from a plain object', async () => {
    expect(await decide({ path: '/tenant', headers: { 'X-Tenant': 'a' } })).toMatchObject({
      allowed: true,
      rule: { name: 'tenant' },
    });
    const wire = checkRequestFromJson(check({ path: '/tenant', headers: { 'X-Tenant': 'a' } }));
    expect(await engine.decide(wire)).toMatchObject({ allowed: true, rule: { name: 'tenant' } });
  });

  test('a keyed header sent twice (joined with ",") is refused, not a fresh bucket', async () => {
    expect(await decide({ path: '/keyed', headers: { 'x-api-key': 'KEY1' } })).toMatchObject({
      allowed: true,
    });
    expect(await decide({ path: '/keyed', headers: { 'x-api-key': 'KEY1' } })).toMatchObject({
      allowed: false,
      code: 'rate_limited',
    });
    await expectMalformed(
      { path: '/keyed', headers: { 'x-api-key': 'KEY1,1' } },
      /x-api-key, which keys a rate limit/,
    );
    await expectMalformed(
      { path: '/keyed', headers: { 'x-api-key': 'KEY1', 'X-Api-Key': '2' } },
      /x-api-key, which keys a rate limit/,
    );
  });

  test('an authorization header carrying two bearer credentials is refused, whichever identity decides', async () => {
    await expectMalformed(
      { path: '/public', headers: { authorization: 'Bearer a.b.c,Bearer d.e.f' } },
      /more than one bearer credential/,
    );
    // Schemes whose syntax has commas are not credentials Gatehouse reads.
    expect(
      await decide({
        path: '/public',
        headers: { authorization: 'Digest username="u", realm="r"' },
      }),
    ).toMatchObject({ allowed: true });
  });
});

describe('nothing from the request reaches a reason unless put there on purpose', () => {
  test('a CEL error is reported by its class, not its message quoting the header', async () => {
    const d = await decide({ path: '/window', headers: { 'x-window': 'sk_live_SECRETKEY' } });
    expect(d).toMatchObject({ allowed: false, code: 'condition_error' });
    expect(d.reason).toBe(
      'condition of rule window of policy api could not be evaluated: invalid_duration',
    );
    expect(d.reason).not.toContain('SECRETKEY');
  });

  test('an internal error is reported by its class, not a message that may quote the request', async () => {
    const quarantine = new MemoryQuarantineState({ onEvent: () => undefined });
    quarantine.current = () => {
      throw new TypeError('cannot read sk_live_SECRETKEY');
    };
    const { engine: failing } = await engineFor(policyDir({ 'api.yaml': SERVICE }), {
      quarantine,
    });
    const d = await failing.decide(check({ path: '/public' }));
    expect(d).toMatchObject({
      allowed: false,
      code: 'malformed_request',
      reason: 'internal error while deciding (TypeError)',
    });
  });

  test('a digit-only payload key is masked like any undeclared name', async () => {
    const d = await decide({
      method: 'POST',
      path: '/counts',
      headers: { 'content-type': 'application/json' },
      body: '{"4111111111111111": "x"}',
    });
    expect(d).toMatchObject({ allowed: false, code: 'payload_rejected' });
    expect(d.reason).toContain('/* must be integer');
    expect(d.reason).not.toContain('4111');
  });
});

describe('bodies that were needed but not forwarded', () => {
  const card = '{"card":{"number":"4111111111111111"}}';

  test('an HTTP/2 POST without content-length is a body of unknown content: a fields refusal cannot pass it', async () => {
    await expectMalformed(
      {
        method: 'POST',
        path: '/public',
        caller: EXPORTER,
        headers: { 'content-type': 'application/json' },
      },
      /card\.number.*not forwarded/,
    );
    await expectMalformed({ method: 'PUT', path: '/public', caller: EXPORTER }, /not forwarded/);
    // A GET that declares no body has none, and an empty POST says so with content-length: 0.
    expect(await decide({ path: '/public', caller: EXPORTER })).toMatchObject({ allowed: true });
    expect(
      await decide({
        method: 'POST',
        path: '/public',
        caller: EXPORTER,
        headers: { 'content-length': '0' },
      }),
    ).toMatchObject({ allowed: true });
  });

  test('any request with a content type may carry a body', async () => {
    await expectMalformed(
      {
        method: 'DELETE',
        path: '/public',
        caller: EXPORTER,
        headers: { 'content-type': 'application/json' },
      },
      /not forwarded/,
    );
  });

  test('maxBytes: a POST without content-length and no forwarded body is refused; a 16-digit length is too large', async () => {
    await expectMalformed(
      { method: 'POST', path: '/sized' },
      /cannot be shown to be within 64 bytes/,
    );
    await expectMalformed(
      { method: 'POST', path: '/sized', headers: { 'content-length': '1000000000000000' } },
      /too large/,
    );
    await expectMalformed(
      { method: 'POST', path: '/sized', headers: { 'content-length': '1e3' } },
      /too large/,
    );
    expect(
      await decide({ method: 'POST', path: '/sized', headers: { 'content-length': '10' } }),
    ).toMatchObject({ allowed: true });
  });

  test('contentTypes: a POST without content-length still has its type checked', async () => {
    expect(
      await decide({ method: 'POST', path: '/typed', headers: { 'content-type': 'text/plain' } }),
    ).toMatchObject({ allowed: false, code: 'payload_rejected' });
    expect(
      await decide({
        method: 'POST',
        path: '/typed',
        headers: { 'content-type': 'application/json' },
      }),
    ).toMatchObject({ allowed: true });
  });

  test('the whole body, forwarded, is read: the refused field is found', async () => {
    expect(
      await decide({
        method: 'POST',
        path: '/public',
        caller: EXPORTER,
        headers: { 'content-type': 'application/json' },
        body: card,
      }),
    ).toMatchObject({ allowed: false, code: 'caller_opt_out' });
  });
});

describe('JSON that parsers disagree on', () => {
  const post = (
    body: string,
    type = 'application/json',
    caller = EXPORTER,
    path = '/public',
  ): Req => ({ method: 'POST', path, caller, headers: { 'content-type': type }, body });

  test.each([
    ['a repeated key, the last one empty', '{"card":{"number":"4111111111111111"},"card":{}}'],
    [
      'a repeated key spelled with an escape',
      '{"card":{"number":"4111111111111111"},"\\u0063ard":{}}',
    ],
    ['keys differing only in case', '{"card":{},"Card":{"number":"4111111111111111"}}'],
    ['a repeated key inside an array element', '{"items":[{"a":1,"a":2}]}'],
  ])('%s is refused', async (_name, body) => {
    await expectMalformed(post(body), /repeats a key/);
  });

  test('an integer schema is not passed by a duplicate the parser drops', async () => {
    await expectMalformed(
      post('{"qty":"x","qty":1}', 'application/json', WEB, '/counts'),
      /repeats a key/,
    );
  });

  test('a refused field is matched regardless of case, as Go and .NET bind it', async () => {
    expect(await decide(post('{"Card":{"Number":"4111111111111111"}}'))).toMatchObject({
      allowed: false,
      code: 'caller_opt_out',
    });
    expect(await decide(post('{"CARD":[{"nUmBeR":"4111111111111111"}]}'))).toMatchObject({
      allowed: false,
      code: 'caller_opt_out',
    });
    expect(await decide(post('{"card":{"ſumber":1},"x":1}'))).toMatchObject({ allowed: true }); // 'ſ' folds to 's', not 'n'
  });

  test('a JSON text sent as form data is form data upstream: refused where body rules read JSON', async () => {
    await expectMalformed(
      post('{"card":{"number":"4111"}}', 'application/x-www-form-urlencoded'),
      /content type is not JSON/,
    );
    await expectMalformed(
      post('{}', 'application/json; charset=utf-16'),
      /charset other than UTF-8/,
    );
    expect(await decide(post('{"ok":1}', 'application/problem+json'))).toMatchObject({
      allowed: true,
    });
  });

  test('nesting deeper than the bound is refused before parsing', async () => {
    const deep = `${'['.repeat(33)}${']'.repeat(33)}`;
    await expectMalformed(post(deep), /nests deeper than 32 levels/);
    const within = `{"a":${'['.repeat(31)}${']'.repeat(31)}}`;
    expect(await decide(post(within))).toMatchObject({ allowed: true });
    // A megabyte of nested arrays: refused, not an internal error.
    const huge = '['.repeat(512 * 1024) + ']'.repeat(512 * 1024);
    await expectMalformed(post(huge), /nests deeper/);
  });
});
