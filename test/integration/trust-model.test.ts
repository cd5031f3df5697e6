import { TestCredentials } from '../../src/policy-test/credentials';
import type { CheckResponseMessage } from '../../src/respond/check-response';
import {
  auditRecordFor,
  decisionIdOf,
  enforcementRequest,
  type EnforcementRequestSpec,
} from '../helpers/enforcement';
import { checkClient, type CheckClient } from '../helpers/grpc-client';
import { EXAMPLE_POLICIES, policyDir } from '../helpers/policies';
import { FRONTEND_WEB, ORDERS } from '../helpers/requests';
import { startTestServer, type TestServer } from '../helpers/server';
import { waitFor } from '../helpers/wait';

/**
 * The attacks of the trust model (issue 13), each against a real Gatehouse over loopback with a
 * real gRPC client: what the caller controls (Host, bodies, extra credentials) never chooses the
 * rules that apply to it, never lifts an enforcing refusal, and never isolates someone else.
 */

const TD = 'spiffe://shop.example';
const PAYMENTS = `${TD}/ns/payments/sa/payments`;
const INVENTORY = `${TD}/ns/inventory/sa/inventory`;
const CUSTOMERS = `${TD}/ns/customers/sa/customers`;
const EXPORTER = `${TD}/ns/reports/sa/exporter`;
const JOBS = `${TD}/ns/jobs/sa/reconcile`;
const ADDRESS = '/v1/customers/c-1/address';

function reasonOf(res: CheckResponseMessage): { code: number; status?: number } {
  return {
    code: res.status?.code ?? 0,
    ...(res.deniedResponse ? { status: res.deniedResponse.status.code } : {}),
  };
}

/** The reason code of a decision, from its audit record (joined by x-gatehouse-decision). */
async function reasonCode(server: TestServer, res: CheckResponseMessage): Promise<string> {
  return auditRecordFor(await server.auditRecords(), decisionIdOf(res))['reason_code'] as string;
}

/** The quarantine as operators see it (admin API providers): entries by caller. */
function quarantineOf(server: TestServer): {
  list(): Promise<unknown[]>;
  release(caller: string): Promise<unknown>;
} {
  return server.app.adminProviders().quarantine!;
}

/** A policy bound to one workload that only orders may call; `extra` lines go into its spec. */
function boundPolicy(name: string, workload: string, extra: string): string {
  return `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: ${name} }
spec:
  workloads: [${workload}]
${extra}
  rules:
    - name: only-orders
      allow: [${ORDERS}]
`;
}

describe('destination binding against the example policies', () => {
  let server: TestServer;
  let client: CheckClient;
  const check = (spec: EnforcementRequestSpec): Promise<CheckResponseMessage> =>
    client.check(enforcementRequest(spec));

  beforeAll(async () => {
    server = await startTestServer({ policiesDir: EXAMPLE_POLICIES });
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  test('the storefront charging a card with its own Host is refused', async () => {
    const res = await check({
      principal: FRONTEND_WEB,
      host: 'payments',
      destination: PAYMENTS,
      method: 'POST',
      path: '/v1/charges',
    });
    expect(reasonOf(res)).toMatchObject({ code: 7, status: 403 });
    expect(await reasonCode(server, res)).toBe('caller_refused');
  });

  test("Host: inventory (dry-run) sent to the payments workload is host_mismatch, never inventory's rules", async () => {
    const res = await check({
      principal: FRONTEND_WEB,
      host: 'inventory',
      destination: PAYMENTS,
      method: 'POST',
      path: '/v1/charges',
    });
    expect(reasonOf(res)).toMatchObject({ code: 7, status: 403 });
    expect(await reasonCode(server, res)).toBe('host_mismatch');
  });

  test('at a dry-run workload, a Host of another policy is still host_mismatch: dry-run softens only its own rules', async () => {
    const res = await check({
      principal: FRONTEND_WEB,
      host: 'payments',
      destination: INVENTORY,
      method: 'POST',
      path: '/v1/charges',
    });
    expect(reasonOf(res)).toMatchObject({ code: 7, status: 403 });
    expect(await reasonCode(server, res)).toBe('host_mismatch');
  });

  test('with no identity at all, a dry-run Host lifts nothing: 401', async () => {
    const res = await check({
      host: 'inventory',
      destination: PAYMENTS,
      method: 'POST',
      path: '/v1/charges',
    });
    expect(reasonOf(res)).toMatchObject({ code: 16, status: 401 });
    // Even at the dry-run workload itself, an identity failure is not the policy's to soften.
    const atInventory = await check({
      host: 'inventory',
      destination: INVENTORY,
      method: 'POST',
      path: '/v1/reservations',
    });
    expect(reasonOf(atInventory)).toMatchObject({ code: 16, status: 401 });
  });

  test('without a destination identity, the Host of a workload-bound policy selects nothing', async () => {
    const res = await check({
      principal: ORDERS,
      host: 'payments',
      destination: '',
      method: 'POST',
      path: '/v1/charges',
    });
    expect(await reasonCode(server, res)).toBe('host_mismatch');
  });

  test("a route's gatehouse_policy context extension names the policy; one naming another workload's is refused", async () => {
    const named = await check({
      principal: ORDERS,
      host: 'payments',
      destination: '',
      contextExtensions: { gatehouse_policy: 'payments' },
      method: 'POST',
      path: '/v1/charges',
    });
    expect(reasonOf(named).code).toBe(0);
    const mismatched = await check({
      principal: ORDERS,
      host: 'payments',
      destination: PAYMENTS,
      contextExtensions: { gatehouse_policy: 'inventory' },
      method: 'POST',
      path: '/v1/charges',
    });
    expect(await reasonCode(server, mismatched)).toBe('route_mismatch');
    const unknown = await check({
      principal: ORDERS,
      host: 'payments',
      destination: '',
      contextExtensions: { gatehouse_policy: 'nope' },
      method: 'POST',
      path: '/v1/charges',
    });
    expect(await reasonCode(server, unknown)).toBe('route_mismatch');
  });

  test.each([
    'payments:abc',
    'payments:',
    'payments:99999',
    'payments:0',
    'pay:ments:80',
    '[::1]x',
    '[::1',
  ])('a malformed port (%s) is malformed_request, never dropped', async (host) => {
    const res = await check({
      principal: ORDERS,
      host,
      destination: PAYMENTS,
      method: 'POST',
      path: '/v1/charges',
    });
    expect(await reasonCode(server, res)).toBe('malformed_request');
  });

  test('a valid port is ignored', async () => {
    const res = await check({
      principal: ORDERS,
      host: 'payments.shop.svc.cluster.local:8443',
      destination: PAYMENTS,
      method: 'POST',
      path: '/v1/charges',
    });
    expect(reasonOf(res).code).toBe(0);
  });

  test('an enforcing WorkloadPolicy refusal stays a denial at a dry-run destination', async () => {
    const res = await check({
      principal: EXPORTER,
      host: 'inventory',
      destination: INVENTORY,
      method: 'GET',
      path: '/v1/items/a',
      headers: { cookie: 'session=x' },
    });
    expect(reasonOf(res)).toMatchObject({ code: 7, status: 403 });
    expect(await reasonCode(server, res)).toBe('caller_opt_out');
  });

  test('the confused deputy: bad bodies relayed by the storefront never quarantine it', async () => {
    const bad = {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ street: 'x' }),
    };
    for (let i = 0; i < 7; i++) {
      const res = await check({
        principal: FRONTEND_WEB,
        host: 'customers',
        destination: CUSTOMERS,
        method: 'PUT',
        path: ADDRESS,
        ...bad,
      });
      expect(await reasonCode(server, res)).toBe('payload_rejected');
    }
    // Give any (wrongly) counted denial time to land, then a good update must still pass.
    await new Promise((r) => setTimeout(r, 200));
    const good = await check({
      principal: FRONTEND_WEB,
      host: 'customers',
      destination: CUSTOMERS,
      method: 'PUT',
      path: ADDRESS,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ street: '1 Main St', city: 'Dublin', country: 'IE' }),
    });
    expect(reasonOf(good).code).toBe(0);
    expect(await quarantineOf(server).list()).toEqual([]);
  });

  test('identity-decided denials quarantine the caller from that workload only', async () => {
    for (let i = 0; i < 5; i++) {
      expect(
        await reasonCode(
          server,
          await check({
            principal: ORDERS,
            host: 'customers',
            destination: CUSTOMERS,
            method: 'GET',
            path: '/v1/customers/export',
          }),
        ),
      ).toBe('caller_not_allowed');
    }
    await waitFor(
      async () =>
        (await reasonCode(
          server,
          await check({
            principal: ORDERS,
            host: 'customers',
            destination: CUSTOMERS,
            method: 'GET',
            path: '/v1/customers/export',
          }),
        )) === 'quarantined',
      'orders quarantined at customers',
    );
    // Isolated from customers, not from the rest of the mesh.
    const elsewhere = await check({
      principal: ORDERS,
      host: 'payments',
      destination: PAYMENTS,
      method: 'POST',
      path: '/v1/charges',
    });
    expect(reasonOf(elsewhere).code).toBe(0);
    const entries = await quarantineOf(server).list();
    expect(entries).toEqual([expect.objectContaining({ caller: ORDERS, policy: 'customers' })]);
    await quarantineOf(server).release(ORDERS);
  });
});

describe('dry-run softens only its own denials', () => {
  const GUARD = `${TD}/ns/guard/sa/guard`;
  const LAB = `${TD}/ns/lab/sa/lab`;
  const MALLORY = `${TD}/ns/frontend/sa/mallory`;
  let server: TestServer;
  let client: CheckClient;
  const check = (spec: EnforcementRequestSpec): Promise<CheckResponseMessage> =>
    client.check(enforcementRequest(spec));

  beforeAll(async () => {
    const dir = policyDir({
      'guard.yaml': boundPolicy(
        'guard',
        GUARD,
        '  quarantine: { denials: 2, window: 1m, duration: 15m, scope: mesh }',
      ),
      'lab.yaml': boundPolicy('lab', LAB, '  mode: dry-run'),
    });
    server = await startTestServer({ policiesDir: dir });
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  test("the dry-run policy's own denial is softened", async () => {
    const res = await check({
      principal: MALLORY,
      host: 'lab',
      destination: LAB,
      method: 'GET',
      path: '/x',
    });
    expect(reasonOf(res).code).toBe(0);
  });

  test('an enforcing mesh-wide quarantine stays a denial at a dry-run destination', async () => {
    for (let i = 0; i < 2; i++)
      expect(
        await reasonCode(
          server,
          await check({
            principal: MALLORY,
            host: 'guard',
            destination: GUARD,
            method: 'GET',
            path: '/x',
          }),
        ),
      ).toBe('caller_not_allowed');
    await waitFor(
      async () =>
        (await reasonCode(
          server,
          await check({
            principal: MALLORY,
            host: 'lab',
            destination: LAB,
            method: 'GET',
            path: '/x',
          }),
        )) === 'quarantined',
      'quarantine reaches the dry-run lab',
    );
  });
});

describe('policy-scoped isolations are kept apart', () => {
  const A = `${TD}/ns/a/sa/a`;
  const B = `${TD}/ns/b/sa/b`;
  const MALLORY = `${TD}/ns/frontend/sa/mallory`;
  let server: TestServer;
  let client: CheckClient;
  const check = (spec: EnforcementRequestSpec): Promise<CheckResponseMessage> =>
    client.check(enforcementRequest(spec));
  const at = (host: string, destination: string) =>
    check({ principal: MALLORY, host, destination, method: 'GET', path: '/x' });

  beforeAll(async () => {
    const quarantine = '  quarantine: { denials: 2, window: 1m, duration: 15m }';
    server = await startTestServer({
      policiesDir: policyDir({
        'a.yaml': boundPolicy('a', A, quarantine),
        'b.yaml': boundPolicy('b', B, quarantine),
      }),
    });
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  test('isolated by a, the caller still counts (and trips) at b; one release ends both', async () => {
    for (let i = 0; i < 2; i++)
      expect(await reasonCode(server, await at('a', A))).toBe('caller_not_allowed');
    await waitFor(
      async () => (await reasonCode(server, await at('a', A))) === 'quarantined',
      'quarantined at a',
    );
    expect(await reasonCode(server, await at('b', B))).toBe('caller_not_allowed');
    expect(await reasonCode(server, await at('b', B))).toBe('caller_not_allowed');
    await waitFor(
      async () => (await reasonCode(server, await at('b', B))) === 'quarantined',
      'quarantined at b too',
    );
    const entries = (await quarantineOf(server).list()) as { caller: string; policy: string }[];
    expect(entries.map((e) => `${e.caller} ${e.policy}`).sort()).toEqual([
      `${MALLORY} a`,
      `${MALLORY} b`,
    ]);
    expect(await quarantineOf(server).release(MALLORY)).toMatchObject({ caller: MALLORY });
    expect(await quarantineOf(server).list()).toEqual([]);
    expect(await reasonCode(server, await at('a', A))).toBe('caller_not_allowed');
  });
});

describe('presented credentials must verify', () => {
  const credentials = new TestCredentials();
  let server: TestServer;
  let client: CheckClient;

  beforeAll(async () => {
    const policies = policyDir({
      'p.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: p }
spec:
  workloads: [${PAYMENTS}]
  audience: payments
  rules:
    - name: any
      allow: [${TD}/**]
`,
    });
    await credentials.jwt({ sub: JOBS }, 'payments');
    server = await startTestServer({
      policiesDir: policies,
      trustXfcc: true,
      trustBundles: credentials.trustBundles(),
      jwt: { audience: 'payments', leewaySeconds: 0 },
    });
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  const withMtls = (headers: Record<string, string>) =>
    client.check(
      enforcementRequest({
        principal: ORDERS,
        host: 'payments',
        destination: PAYMENTS,
        method: 'GET',
        path: '/x',
        headers,
      }),
    );

  test('an expired JWT-SVID beside a valid mTLS principal is a 401', async () => {
    const expired = await credentials.jwt({ sub: JOBS, expiresIn: -60 }, 'payments');
    const res = await withMtls({ authorization: `Bearer ${expired}` });
    expect(reasonOf(res)).toMatchObject({ code: 16, status: 401 });
    expect(res.deniedResponse!.body).not.toContain(expired.slice(0, 20));
  });

  test('a JWT-SVID for another audience beside mTLS is a 401; a valid one is fine', async () => {
    expect(
      reasonOf(
        await withMtls({
          authorization: `Bearer ${await credentials.jwt({ sub: JOBS }, 'elsewhere')}`,
        }),
      ),
    ).toMatchObject({ code: 16 });
    expect(
      reasonOf(
        await withMtls({
          authorization: `Bearer ${await credentials.jwt({ sub: JOBS }, 'payments')}`,
        }),
      ).code,
    ).toBe(0);
  });

  test("an app's own bearer token (not a JWT-SVID) beside mTLS is not read", async () => {
    expect(reasonOf(await withMtls({ authorization: 'Bearer opaque-app-token' })).code).toBe(0);
  });

  test('an XFCC header that does not parse, while XFCC is trusted, is a 401 beside a verified principal', async () => {
    expect(
      reasonOf(await withMtls({ 'x-forwarded-client-cert': 'URI="unterminated' })),
    ).toMatchObject({ code: 16, status: 401 });
    expect(reasonOf(await withMtls({ 'x-forwarded-client-cert': `URI=${ORDERS}` })).code).toBe(0);
  });
});
