import { toCheckResponse } from '../../src/respond/check-response';
import { DecisionEngine } from '../../src/pipeline/engine';
import type { Decision } from '../../src/pipeline/decision';
import { MemoryBucketStore } from '../../src/ratelimit/memory-store';
import { engineFor, loadSet } from '../helpers/engine';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { buildPolicySet, servicePolicyDoc } from '../helpers/policy-builder';
import {
  CHECKOUT_BATCH,
  CHECKOUT_WEB,
  envoyCheckRequest,
  FRONTEND_WEB,
  ORDERS,
} from '../helpers/requests';

describe('decision engine over the example mesh', () => {
  test('a permitted caller is allowed by the named rule, with its limit state', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const d = await engine.decide(envoyCheckRequest({ principal: CHECKOUT_WEB }));
    expect(d).toMatchObject({
      allowed: true,
      status: 200,
      code: 'allowed',
      caller: CHECKOUT_WEB,
      identitySource: 'principal',
    });
    expect(d.policy?.name).toBe('orders');
    expect(d.rule?.name).toBe('create-order');
    expect(d.limit).toMatchObject({ limit: 20, remaining: 19 });
  });

  test('a refusal beats an allow (batch matches checkout/sa/* and is refused)', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const d = await engine.decide(envoyCheckRequest({ principal: CHECKOUT_BATCH }));
    expect(d).toMatchObject({ allowed: false, status: 403, code: 'caller_refused' });
    expect(d.rule?.name).toBe('create-order');
    // The same caller may still read: the refusal is per rule.
    const read = await engine.decide(
      envoyCheckRequest({ principal: CHECKOUT_BATCH, method: 'GET', path: '/v1/orders/42' }),
    );
    expect(read).toMatchObject({ allowed: true, code: 'allowed' });
    expect(read.rule?.name).toBe('read-orders');
  });

  test('a refusal in another matching rule beats an allow in an earlier rule', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    // payments: `charge` allows orders; `never-from-frontend` refuses frontend on every path.
    expect(
      await engine.decide(
        envoyCheckRequest({ principal: ORDERS, host: 'payments', path: '/v1/charges' }),
      ),
    ).toMatchObject({ allowed: true });
    const d = await engine.decide(
      envoyCheckRequest({ principal: FRONTEND_WEB, host: 'payments', path: '/v1/charges' }),
    );
    expect(d).toMatchObject({ allowed: false, status: 403, code: 'caller_refused' });
    expect(d.rule?.name).toBe('never-from-frontend');
  });

  test.each([
    [{ principal: undefined }, 401, 'no_identity'],
    [{ principal: 'not-a-spiffe-id' }, 401, 'invalid_identity'],
    [{ principal: 'spiffe://evil.example/ns/checkout/sa/web' }, 401, 'untrusted_domain'],
    [
      { principal: 'spiffe://shop.example/ns/checkout/sa/web/../../frontend/sa/web' },
      401,
      'invalid_identity',
    ],
    [{ principal: 'SPIFFE://shop.example/ns/checkout/sa/web' }, 401, 'invalid_identity'],
    [{ principal: CHECKOUT_WEB, host: 'unknown.shop' }, 403, 'unknown_host'],
    [{ principal: CHECKOUT_WEB, path: '/v1/refunds' }, 403, 'no_matching_rule'],
    [{ principal: CHECKOUT_WEB, method: 'DELETE' }, 403, 'no_matching_rule'],
    [{ principal: ORDERS }, 403, 'caller_not_allowed'],
    [{ principal: CHECKOUT_WEB, path: '/v1/orders/../../admin' }, 403, 'malformed_request'],
  ])('%j → %d %s', async (spec, status, code) => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const d = await engine.decide(envoyCheckRequest(spec));
    expect(d).toMatchObject({ allowed: false, status, code });
    expect(d.reason.length).toBeGreaterThan(0);
  });

  test('identity comes first: a caller with no identity on an unknown host is a 401', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    expect(await engine.decide(envoyCheckRequest({ host: 'nowhere' }))).toMatchObject({
      status: 401,
      code: 'no_identity',
    });
  });

  test('rate limit: capacity then 429 with retry-after, per caller', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const req = envoyCheckRequest({ principal: ORDERS, host: 'payments', path: '/v1/charges' });
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await engine.decide(req));
    expect(results.map((d) => d.status)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(results[5]).toMatchObject({
      code: 'rate_limited',
      limit: { allowed: false, remaining: 0, retryAfterSeconds: 1 },
    });
    const other = await engine.decide(
      envoyCheckRequest({
        principal: 'spiffe://shop.example/ns/orders/sa/orders-canary',
        host: 'payments',
        path: '/v1/charges',
      }),
    );
    expect(other.code).toBe('caller_not_allowed');
  });

  test('an internal error denies even under a dry-run policy', async () => {
    const set = await loadSet(EXAMPLE_POLICIES);
    const decisions: Decision[] = [];
    const engine = new DecisionEngine({
      policies: () => set,
      // A broken dependency: every identity lookup throws inside the pipeline.
      identity: { trustDomains: null as unknown as Set<string>, trustXfcc: false },
      store: new MemoryBucketStore(),
      sink: { record: (d) => decisions.push(d) },
    });
    const d = await engine.decide(
      envoyCheckRequest({ principal: CHECKOUT_WEB, host: 'inventory', path: '/v1/reservations' }),
    );
    expect(d).toMatchObject({
      allowed: false,
      status: 403,
      code: 'malformed_request',
      wouldDeny: undefined,
    });
    expect(d.reason).toContain('internal error');
    expect(decisions).toHaveLength(1);
  });

  test('dry-run: a would-be denial is allowed and carries what would have happened', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const d = await engine.decide(
      envoyCheckRequest({ principal: FRONTEND_WEB, host: 'inventory', path: '/v1/reservations' }),
    );
    expect(d).toMatchObject({
      allowed: true,
      status: 200,
      wouldDeny: { status: 403, code: 'caller_not_allowed' },
    });
    // Dry-run softens only its own rules' denials: a caller with no identity stays a 401.
    const anon = await engine.decide(
      envoyCheckRequest({ host: 'inventory', path: '/v1/reservations' }),
    );
    expect(anon).toMatchObject({
      allowed: false,
      status: 401,
      code: 'no_identity',
      wouldDeny: undefined,
    });
    const ok = await engine.decide(
      envoyCheckRequest({ principal: ORDERS, host: 'inventory', path: '/v1/reservations' }),
    );
    expect(ok).toMatchObject({ allowed: true, wouldDeny: undefined });
  });

  test('per: header keys buckets by the header value', async () => {
    const set = buildPolicySet(
      servicePolicyDoc(
        'p',
        ['p'],
        [
          {
            name: 'r',
            allow: ['spiffe://shop.example/**'],
            rateLimit: { capacity: 1, refillPerSecond: 0.001, per: 'header:x-tenant' },
          },
        ],
      ),
    );
    const { engine } = await engineFor(set);
    const req = (tenant?: string) =>
      envoyCheckRequest({
        principal: CHECKOUT_WEB,
        host: 'p',
        headers: tenant ? { 'x-tenant': tenant } : {},
      });
    expect((await engine.decide(req('a'))).status).toBe(200);
    expect((await engine.decide(req('a'))).status).toBe(429);
    expect((await engine.decide(req('b'))).status).toBe(200);
    expect((await engine.decide(req())).status).toBe(200); // missing header: one shared bucket
    expect((await engine.decide(req())).status).toBe(429);
  });

  test('a failing limit store follows onBackendError; identity and permissions still apply', async () => {
    const failing = {
      kind: 'broken',
      take: () => Promise.reject(new Error('down')),
      close: async () => undefined,
    };
    const set = buildPolicySet(
      servicePolicyDoc(
        'p',
        ['p', 'q'],
        [
          {
            name: 'open',
            paths: ['/open'],
            allow: ['spiffe://shop.example/**'],
            rateLimit: { capacity: 1, refillPerSecond: 1 },
          },
          {
            name: 'closed',
            paths: ['/closed'],
            allow: ['spiffe://shop.example/**'],
            rateLimit: { capacity: 1, refillPerSecond: 1, onBackendError: 'deny' },
          },
        ],
      ),
    );
    const { engine } = await engineFor(set, { store: failing });
    expect(
      await engine.decide(envoyCheckRequest({ principal: CHECKOUT_WEB, host: 'p', path: '/open' })),
    ).toMatchObject({ allowed: true });
    expect(
      await engine.decide(
        envoyCheckRequest({ principal: CHECKOUT_WEB, host: 'p', path: '/closed' }),
      ),
    ).toMatchObject({ status: 429, code: 'limit_backend_error' });
    expect(await engine.decide(envoyCheckRequest({ host: 'p', path: '/open' }))).toMatchObject({
      status: 401,
    });
  });

  test('XFCC is only read when trusted, and only the nearest element counts', async () => {
    const xfcc = `By=spiffe://shop.example/ns/edge/sa/proxy;URI=${ORDERS},By=spiffe://shop.example/ns/orders/sa/orders;Hash=ab;Subject="";URI=${CHECKOUT_WEB}`;
    const req = envoyCheckRequest({ headers: { 'x-forwarded-client-cert': xfcc } });
    const untrusted = await engineFor(EXAMPLE_POLICIES);
    expect(await untrusted.engine.decide(req)).toMatchObject({ status: 401, code: 'no_identity' });
    const trusted = await engineFor(EXAMPLE_POLICIES, { trustXfcc: true });
    expect(await trusted.engine.decide(req)).toMatchObject({
      allowed: true,
      caller: CHECKOUT_WEB,
      identitySource: 'xfcc',
    });
    // The peer principal is stronger and wins over XFCC.
    const both = envoyCheckRequest({
      principal: CHECKOUT_BATCH,
      headers: { 'x-forwarded-client-cert': xfcc },
    });
    expect(await trusted.engine.decide(both)).toMatchObject({
      code: 'caller_refused',
      caller: CHECKOUT_BATCH,
    });
  });

  test.each([
    ['URI=', 'no URI SAN'],
    [`URI=${CHECKOUT_WEB};URI=${FRONTEND_WEB}`, 'more than one URI SAN'],
    ['URI="unterminated', 'x-forwarded-client-cert'],
    ['URI=spiffe://evil.example/ns/a/sa/b', 'not trusted'],
  ])('a present but bad XFCC is a 401, never a fall-back: %s', async (xfcc, reason) => {
    const { engine } = await engineFor(EXAMPLE_POLICIES, { trustXfcc: true });
    const d = await engine.decide(
      envoyCheckRequest({ headers: { 'x-forwarded-client-cert': xfcc } }),
    );
    expect(d.status).toBe(401);
    expect(d.reason).toContain(reason);
  });

  test('no trust domain configured: every caller is a 401', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES, { trustDomains: [] });
    expect(await engine.decide(envoyCheckRequest({ principal: CHECKOUT_WEB }))).toMatchObject({
      status: 401,
      code: 'untrusted_domain',
    });
  });

  test('thousands of headers are decided normally and spoofed x-gatehouse-* headers are listed', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const headers: Record<string, string> = { 'x-gatehouse-trusted': 'yes' };
    for (let i = 0; i < 5000; i++) headers[`x-h-${i}`] = 'v'.repeat(50);
    const d = await engine.decide(envoyCheckRequest({ principal: CHECKOUT_WEB, headers }));
    expect(d).toMatchObject({ allowed: true, spoofedHeaders: ['x-gatehouse-trusted'] });
  });
});

describe('respond stage', () => {
  test('allow: upstream headers overwrite, spoofed headers removed, ratelimit headers to the client', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const d = await engine.decide(
      envoyCheckRequest({ principal: CHECKOUT_WEB, headers: { 'x-gatehouse-role': 'admin' } }),
    );
    const r = toCheckResponse(d);
    expect(r.status.code).toBe(0);
    expect(r.deniedResponse).toBeUndefined();
    const upstream = Object.fromEntries(r.okResponse!.headers.map((h) => [h.header.key, h]));
    expect(upstream['x-gatehouse-caller']).toEqual({
      header: { key: 'x-gatehouse-caller', value: CHECKOUT_WEB },
      appendAction: 2,
    });
    expect(upstream['x-gatehouse-policy']!.header.value).toBe(`orders@${d.policyVersion}`);
    expect(upstream['x-gatehouse-decision']!.header.value).toBe(d.id);
    expect(r.okResponse!.headers.every((h) => !('append' in h))).toBe(true);
    expect(r.okResponse!.headersToRemove).toEqual(['x-gatehouse-role']);
    expect(
      r.okResponse!.responseHeadersToAdd.map((h) => [h.header.key, h.header.value, h.appendAction]),
    ).toEqual([
      ['ratelimit-limit', '20', 2],
      ['ratelimit-remaining', '19', 2],
      ['ratelimit-reset', '1', 2],
    ]);
  });

  test('deny: status code inside an OK RPC, HTTP status, JSON body, decision header', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const cases = [
      [
        envoyCheckRequest({ headers: { authorization: 'Bearer secret-token-value' } }),
        16,
        401,
        'unauthenticated',
      ],
      [envoyCheckRequest({ principal: CHECKOUT_BATCH }), 7, 403, 'forbidden'],
    ] as const;
    for (const [req, rpcCode, httpStatus, error] of cases) {
      const d = await engine.decide(req);
      const r = toCheckResponse(d);
      expect(r.status.code).toBe(rpcCode);
      expect(r.okResponse).toBeUndefined();
      expect(r.deniedResponse!.status.code).toBe(httpStatus);
      const headers = Object.fromEntries(
        r.deniedResponse!.headers.map((h) => [h.header.key, h.header.value]),
      );
      expect(headers['content-type']).toBe('application/json');
      expect(headers['x-gatehouse-decision']).toBe(d.id);
      expect(JSON.parse(r.deniedResponse!.body)).toEqual({
        error,
        reason: d.reason,
        decision_id: d.id,
      });
      expect(JSON.stringify(r)).not.toContain('secret-token-value');
    }
  });

  test('429 carries retry-after in whole seconds and the ratelimit headers', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const req = envoyCheckRequest({ principal: ORDERS, host: 'payments', path: '/v1/charges' });
    let d = await engine.decide(req);
    for (let i = 0; i < 5; i++) d = await engine.decide(req);
    const r = toCheckResponse(d);
    expect(r.status.code).toBe(8);
    expect(r.deniedResponse!.status.code).toBe(429);
    const headers = Object.fromEntries(
      r.deniedResponse!.headers.map((h) => [h.header.key, h.header.value]),
    );
    expect(headers['retry-after']).toBe('1');
    expect(headers['ratelimit-remaining']).toBe('0');
    expect(headers['ratelimit-limit']).toBe('5');
    expect(JSON.parse(r.deniedResponse!.body).error).toBe('rate_limited');
  });
});
