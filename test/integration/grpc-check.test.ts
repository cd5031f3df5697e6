import * as grpc from '@grpc/grpc-js';
import { checkClient, headerMap, type CheckClient } from '../helpers/grpc-client';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import {
  CHECKOUT_BATCH,
  CHECKOUT_WEB,
  envoyCheckRequest,
  FRONTEND_WEB,
  ORDERS,
} from '../helpers/requests';
import { startTestServer, type TestServer } from '../helpers/server';

describe('gRPC Check over loopback against the example policies', () => {
  let server: TestServer;
  let client: CheckClient;

  beforeAll(async () => {
    server = await startTestServer({ policiesDir: EXAMPLE_POLICIES });
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client.close();
    await server.stop();
  });

  test('allow: OK status, ok_response with the SPEC headers', async () => {
    const r = await client.check(
      envoyCheckRequest({
        principal: CHECKOUT_WEB,
        headers: {
          'x-gatehouse-caller': 'spiffe://shop.example/ns/admin/sa/root',
          'x-gatehouse-extra': '1',
        },
      }),
    );
    expect(r.status?.code ?? 0).toBe(0);
    expect(r.deniedResponse).toBeUndefined();
    const upstream = headerMap(r.okResponse!.headers);
    expect(upstream['x-gatehouse-caller']).toBe(CHECKOUT_WEB);
    expect(upstream['x-gatehouse-policy']).toBe(`orders@${server.app.policies.version}`);
    expect(upstream['x-gatehouse-decision']).toMatch(/^[0-9a-f-]{36}$/);
    for (const h of r.okResponse!.headers) {
      expect(h.appendAction).toBe(2);
      expect((h as { append?: unknown }).append).toBeUndefined();
    }
    expect(r.okResponse!.headersToRemove).toEqual(['x-gatehouse-extra']);
    expect(headerMap(r.okResponse!.responseHeadersToAdd)).toEqual({
      'ratelimit-limit': '20',
      'ratelimit-remaining': '19',
      'ratelimit-reset': '1',
    });
  });

  test('401, 403 and 429 are successful RPCs with denied_response and JSON bodies', async () => {
    const unauth = await client.check(
      envoyCheckRequest({ headers: { authorization: 'Bearer super-secret-token' } }),
    );
    expect(unauth.status.code).toBe(16);
    expect(unauth.deniedResponse!.status.code).toBe(401);
    expect(JSON.parse(unauth.deniedResponse!.body)).toMatchObject({
      error: 'unauthenticated',
      decision_id: headerMap(unauth.deniedResponse!.headers)['x-gatehouse-decision'],
    });
    expect(JSON.stringify(unauth)).not.toContain('super-secret-token');

    const refused = await client.check(envoyCheckRequest({ principal: CHECKOUT_BATCH }));
    expect(refused.status.code).toBe(7);
    expect(refused.deniedResponse!.status.code).toBe(403);
    expect(JSON.parse(refused.deniedResponse!.body).reason).toContain(
      'refused by rule create-order',
    );

    const req = envoyCheckRequest({
      principal: ORDERS,
      host: 'payments.shop.svc.cluster.local',
      path: '/v1/charges',
    });
    const statuses: number[] = [];
    let last = await client.check(req);
    statuses.push(last.deniedResponse?.status.code ?? 200);
    for (let i = 0; i < 5; i++) {
      last = await client.check(req);
      statuses.push(last.deniedResponse?.status.code ?? 200);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    expect(last.status.code).toBe(8);
    const headers = headerMap(last.deniedResponse!.headers);
    expect(headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
    expect(headers['content-type']).toBe('application/json');
    expect(JSON.parse(last.deniedResponse!.body).error).toBe('rate_limited');
  });

  test('hostile inputs get a deny with a reason, never an RPC error or an allow', async () => {
    const inputs: unknown[] = [
      {},
      { attributes: {} },
      { attributes: { request: { http: {} } } },
      {
        attributes: {
          source: { principal: CHECKOUT_WEB },
          request: { http: { host: 'orders', method: 'POST' } },
        },
      },
      envoyCheckRequest({ principal: `spiffe://shop.example/${'a/'.repeat(5000)}x` }),
      envoyCheckRequest({ principal: 'spiffe://shop.example/ns/checkout/sa/web\u0000' }),
      envoyCheckRequest({ principal: 'spiffe://shop.example:443/ns/checkout/sa/web' }),
      envoyCheckRequest({ principal: 'spiffe://user@shop.example/ns/checkout/sa/web' }),
      envoyCheckRequest({ principal: 'spiffe://shop.example/ns/checkout/sa/web?x=1' }),
      envoyCheckRequest({ principal: 'spiffe://shop.example/ns/checkout/sa/web#f' }),
      envoyCheckRequest({ principal: 'spiffe://shop.example/ns/checkout/sa/%77eb' }),
      envoyCheckRequest({ principal: 'spiffe://shop.еxample/ns/checkout/sa/web' }), // Cyrillic е
      envoyCheckRequest({ principal: CHECKOUT_WEB, host: 'nowhere.example' }),
      envoyCheckRequest({ principal: CHECKOUT_WEB, path: '/v1/orders/%2e%2e/%2e%2e/payments' }),
      envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'post' }),
    ];
    for (const input of inputs) {
      const r = await client.check(input);
      expect(r.status.code).not.toBe(0);
      expect(r.okResponse).toBeUndefined();
      expect([401, 403]).toContain(r.deniedResponse!.status.code);
      expect(JSON.parse(r.deniedResponse!.body).reason.length).toBeGreaterThan(0);
    }
  });

  test('garbage bytes are denied as undecodable, and the server keeps serving', async () => {
    for (const bytes of [
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]),
      Buffer.from('not protobuf at all'),
      Buffer.alloc(0),
      Buffer.from([0x0a, 0x80]),
    ]) {
      const r = await client.checkRaw(bytes);
      expect(r.status.code).not.toBe(0);
      expect(r.deniedResponse!.status.code).toBe(403);
    }
    const r = await client.checkRaw(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect(JSON.parse(r.deniedResponse!.body).reason).toMatch(
      /could not be decoded|no HTTP request attributes/,
    );
    const ok = await client.check(envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' }));
    expect(ok.status?.code ?? 0).toBe(0);
  });

  test('thousands of headers in one request', async () => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < 3000; i++) headers[`x-header-${i}`] = `value-${i}`;
    const r = await client.check(
      envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET', headers }),
    );
    expect(r.status?.code ?? 0).toBe(0);
  });

  test('concurrent checks are all answered', async () => {
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        client.check(
          envoyCheckRequest({
            principal: i % 2 ? CHECKOUT_WEB : CHECKOUT_BATCH,
            method: 'GET',
            path: `/v1/orders/${i}`,
          }),
        ),
      ),
    );
    expect(results.filter((r) => (r.status?.code ?? 0) === 0)).toHaveLength(300);
  });

  test('TCP checks (no HTTP attributes): decided by caller against the workload policy', async () => {
    const connect = (caller: string | undefined, workload: string | undefined) =>
      client.check({
        attributes: {
          source: {
            address: { socketAddress: { address: '10.0.3.7', portValue: 40000 } },
            ...(caller ? { principal: caller } : {}),
          },
          destination: {
            address: { socketAddress: { address: '10.0.9.9', portValue: 5432 } },
            ...(workload ? { principal: workload } : {}),
          },
        },
      });
    const DB = 'spiffe://shop.example/ns/data/sa/orders-db';
    expect((await connect(ORDERS, DB)).status?.code ?? 0).toBe(0);
    const refused = await connect('spiffe://shop.example/ns/frontend/sa/web', DB);
    expect(refused.status.code).toBe(7);
    expect(JSON.parse(refused.deniedResponse!.body).reason).toContain(
      'refused by tcp.deny of policy orders-db',
    );
    expect((await connect(undefined, DB)).status.code).toBe(16);
    const unknown = await connect(ORDERS, 'spiffe://shop.example/ns/data/sa/other-db');
    expect(JSON.parse(unknown.deniedResponse!.body).reason).toContain(
      "no policy guards workload 'spiffe://shop.example/ns/data/sa/other-db'",
    );
    const anonymousDestination = await connect(ORDERS, undefined);
    expect(JSON.parse(anonymousDestination.deniedResponse!.body).reason).toContain(
      'no HTTP request attributes and no destination principal',
    );
    // An HTTP policy without tcp rules does not admit connections to its workloads.
    expect((await connect(ORDERS, 'spiffe://shop.example/ns/orders/sa/orders')).status.code).toBe(
      7,
    );
  });

  test('health: SERVING for the server and the Authorization service, NOT_FOUND otherwise', async () => {
    expect(await client.health('')).toEqual({ status: 1 });
    expect(await client.health('envoy.service.auth.v3.Authorization')).toEqual({ status: 1 });
    await expect(client.health('other')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  test('every decision is audited with the policy version and without secrets', async () => {
    await client.check(
      envoyCheckRequest({
        principal: CHECKOUT_WEB,
        method: 'GET',
        path: '/v1/orders/audit-me?token=abc',
        headers: { authorization: 'Bearer audit-secret', 'x-request-id': 'req-audit-1' },
      }),
    );
    const records = await server.auditRecords();
    const rec = records.find((r) => r['request_id'] === 'req-audit-1');
    expect(rec).toMatchObject({
      msg: 'decision',
      result: 'allow',
      status: 200,
      caller: CHECKOUT_WEB,
      identity_source: 'principal',
      host: 'orders.shop.svc.cluster.local',
      method: 'GET',
      path: '/v1/orders/audit-me',
      policy: 'orders',
      policy_version: server.app.policies.version,
      rule: 'read-orders',
      dry_run: false,
    });
    expect(typeof rec!['decision_id']).toBe('string');
    expect(typeof rec!['time']).toBe('string');
    expect(typeof rec!['latency_ms']).toBe('number');
    const all = JSON.stringify(records);
    expect(all).not.toContain('audit-secret');
    expect(all).not.toContain('super-secret-token');
    expect(all).not.toContain('token=abc');
  });

  test('dry-run allows and audits "would deny"', async () => {
    const r = await client.check(
      envoyCheckRequest({
        principal: CHECKOUT_WEB,
        host: 'inventory',
        path: '/v1/reservations',
        headers: { 'x-request-id': 'dry-1' },
      }),
    );
    expect(r.status?.code ?? 0).toBe(0);
    expect(headerMap(r.okResponse!.headers)['x-gatehouse-caller']).toBe(CHECKOUT_WEB);
    const rec = (await server.auditRecords()).find((x) => x['request_id'] === 'dry-1');
    expect(rec).toMatchObject({
      msg: 'would deny (dry-run)',
      result: 'allow',
      dry_run: true,
      would_deny: { status: 403, reason_code: 'caller_not_allowed' },
    });
  });

  test('encode_raw_headers: headers in header_map are read (spoofed x-gatehouse-* removed, request id audited)', async () => {
    const request = envoyCheckRequest({
      principal: CHECKOUT_WEB,
      method: 'GET',
      path: '/v1/orders/7',
    }) as { attributes: { request: { http: Record<string, unknown> } } };
    delete request.attributes.request.http['headers'];
    request.attributes.request.http['headerMap'] = {
      headers: [
        { key: 'x-request-id', rawValue: Buffer.from('raw-headers-1') },
        { key: 'x-gatehouse-role', rawValue: Buffer.from('admin') },
      ],
    };
    const r = await client.check(request);
    expect(r.status?.code ?? 0).toBe(0);
    expect(r.okResponse!.headersToRemove).toEqual(['x-gatehouse-role']);
    expect((await server.auditRecords()).some((x) => x['request_id'] === 'raw-headers-1')).toBe(
      true,
    );
  });

  test('dry-run would-deny: a client-sent x-gatehouse-caller is replaced by the verified caller, never passed on', async () => {
    const r = await client.check(
      envoyCheckRequest({
        principal: FRONTEND_WEB,
        host: 'inventory',
        path: '/v1/reservations',
        headers: {
          'x-gatehouse-caller': ORDERS,
          'x-gatehouse-policy': 'forged',
          'x-gatehouse-decision': 'forged',
        },
      }),
    );
    expect(r.status?.code ?? 0).toBe(0);
    const upstream = headerMap(r.okResponse!.headers);
    expect(upstream['x-gatehouse-caller']).toBe(FRONTEND_WEB);
    expect(upstream['x-gatehouse-policy']).toMatch(/^inventory@/);
    expect(upstream['x-gatehouse-decision']).not.toBe('forged');
    // Gatehouse's own value replaces the client's for the headers it sets; the rest are removed.
    expect(r.okResponse!.headersToRemove ?? []).toEqual([]);
  });

  test('dry-run without an identity: still a 401, the dry-run destination lifts no identity failure', async () => {
    const r = await client.check(
      envoyCheckRequest({
        host: 'inventory',
        path: '/v1/reservations',
        headers: { 'x-gatehouse-caller': ORDERS },
      }),
    );
    expect(r.status?.code).toBe(16);
    expect(r.deniedResponse?.status?.code).toBe(401);
  });
});
