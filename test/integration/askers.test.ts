import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import * as grpc from '@grpc/grpc-js';
import type { CheckResponseMessage } from '../../src/respond/check-response';
import { loadProtos } from '../../src/server/protos';
import { spiffeUriSan } from '../../src/server/askers';
import type { QuarantineState } from '../../src/quarantine/types';
import { EXAMPLE_POLICIES, gatewayExamplePolicies } from '../helpers/policies';
import { TestCa, type Issued } from '../helpers/pki';
import { envoyCheckRequest, ORDERS } from '../helpers/requests';
import { startTestServer, type TestServer } from '../helpers/server';
import { checkClient } from '../helpers/grpc-client';
import type { CheckInput } from '../../src/envoy/check-input';

/**
 * Only proxies may ask: the Check port over TLS with client certificates, askers named by their
 * certificate's SPIFFE ID (or, inside a mesh, by the XFCC metadata of Gatehouse's own sidecar).
 * Every case is a real server and a real gRPC client over loopback.
 */

const TD = 'spiffe://shop.example';
const PAYMENTS = `${TD}/ns/payments/sa/payments`;
const CUSTOMERS = `${TD}/ns/customers/sa/customers`;
const GATEWAY = `${TD}/ns/ingress/sa/gateway`;
const WEB = `${TD}/ns/frontend/sa/web`;

interface Asker {
  check(request: unknown, metadata?: grpc.Metadata): Promise<CheckResponseMessage>;
  close(): void;
}

function tlsAsker(port: number, ca: TestCa, identity: Issued | undefined): Asker {
  const protos = loadProtos();
  const creds = grpc.credentials.createSsl(
    readFileSync(ca.cert),
    identity ? readFileSync(identity.key) : null,
    identity ? readFileSync(identity.cert) : null,
  );
  const client = new protos.AuthorizationClient(`127.0.0.1:${port}`, creds, {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.use_local_subchannel_pool': 1,
  }) as grpc.Client & Record<string, Function>;
  return {
    check: (request, metadata = new grpc.Metadata()) =>
      new Promise((resolve, reject) =>
        client['Check']!(
          request,
          metadata,
          { deadline: Date.now() + 5000 },
          (err: grpc.ServiceError | null, res: CheckResponseMessage) =>
            err ? reject(err) : resolve(res),
        ),
      ),
    close: () => client.close(),
  };
}

function charge(destination: string, principal = ORDERS): CheckInput {
  return envoyCheckRequest({
    principal,
    host: 'payments',
    destination,
    method: 'POST',
    path: '/v1/charges',
  });
}

function quarantineOf(server: TestServer): QuarantineState {
  return (server.app as unknown as { state: { quarantine: QuarantineState } }).state.quarantine;
}

async function metricsText(server: TestServer): Promise<string> {
  return server.app.metrics.registry.metrics();
}

describe('the Check port over TLS: only proxies may ask', () => {
  const ca = new TestCa('askers');
  const rogue = new TestCa('rogue');
  let server: TestServer;
  let payments: Asker;

  beforeAll(async () => {
    const serverCert = ca.issue('gatehouse', 'DNS:localhost,IP:127.0.0.1', [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
    ]);
    server = await startTestServer({
      policiesDir: EXAMPLE_POLICIES,
      askers: {
        tls: { certFile: serverCert.cert, keyFile: serverCert.key, clientCaFile: ca.cert },
        askers: [`${TD}/ns/payments/**`, `${TD}/ns/customers/**`, GATEWAY],
        gateways: [GATEWAY],
        fromXfcc: false,
      },
    });
    payments = tlsAsker(server.port, ca, ca.issue('payments-sidecar', `URI:${PAYMENTS}`));
  });
  afterAll(async () => {
    payments?.close();
    await server?.stop();
  });

  test('a sidecar asks about requests to itself', async () => {
    const res = await payments.check(charge(PAYMENTS));
    expect(res.status?.code ?? 0).toBe(0);
  });

  test('forged checks about another workload are PERMISSION_DENIED and change nothing: no quarantine, no token, no decision record', async () => {
    const before = (await server.auditRecords()).filter(
      (r) => r['msg'] === 'decision' || r['msg'] === 'would deny (dry-run)',
    ).length;
    // Five forged checks naming orders against customers would quarantine it, if believed.
    for (let i = 0; i < 6; i++) {
      const forged = envoyCheckRequest({
        principal: ORDERS,
        host: 'customers',
        destination: CUSTOMERS,
        method: 'GET',
        path: '/v1/customers/export',
      });
      await expect(payments.check(forged)).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
      });
    }
    expect(await quarantineOf(server).list()).toEqual([]);
    const records = await server.auditRecords();
    expect(
      records.filter((r) => r['msg'] === 'decision' || r['msg'] === 'would deny (dry-run)'),
    ).toHaveLength(before);
    const refused = records.filter((r) => r['event'] === 'asker.refused');
    expect(refused).toHaveLength(6);
    expect(refused[0]).toMatchObject({
      reason: 'not_own_destination',
      asker: PAYMENTS,
      destination: CUSTOMERS,
    });
    expect(await metricsText(server)).toMatch(
      /^gatehouse_asker_refusals_total\{reason="not_own_destination"\} 6$/m,
    );
  });

  test('an asker that is not the destination cannot drain its bucket; the gateway may ask about anyone', async () => {
    const customers = tlsAsker(server.port, ca, ca.issue('customers-sidecar', `URI:${CUSTOMERS}`));
    const gateway = tlsAsker(server.port, ca, ca.issue('gateway', `URI:${GATEWAY}`));
    try {
      // Believed, these would empty orders' charge bucket (capacity 5, 1/s).
      for (let i = 0; i < 8; i++)
        await expect(customers.check(charge(PAYMENTS, ORDERS))).rejects.toMatchObject({
          code: grpc.status.PERMISSION_DENIED,
        });
      const answers = [];
      for (let i = 0; i < 5; i++)
        answers.push((await gateway.check(charge(PAYMENTS, ORDERS))).status?.code ?? 0);
      // One token may still be refilling from the first test's charge; an emptied bucket would admit at most one or two.
      expect(answers.filter((c) => c === 0).length).toBeGreaterThanOrEqual(4);
    } finally {
      customers.close();
      gateway.close();
    }
  });

  test('an asker not listed in --askers is refused whatever it asks', async () => {
    const web = tlsAsker(server.port, ca, ca.issue('web-sidecar', `URI:${WEB}`));
    try {
      await expect(
        web.check(
          envoyCheckRequest({
            principal: ORDERS,
            host: 'frontend',
            destination: WEB,
            method: 'GET',
            path: '/',
          }),
        ),
      ).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      expect(await metricsText(server)).toMatch(
        /^gatehouse_asker_refusals_total\{reason="asker_not_listed"\} 1$/m,
      );
    } finally {
      web.close();
    }
  });

  test('a certificate from another CA, no certificate, or plaintext never reaches a decision', async () => {
    const impostor = tlsAsker(server.port, ca, rogue.issue('impostor', `URI:${PAYMENTS}`));
    const anonymous = tlsAsker(server.port, ca, undefined);
    const plaintext = checkClient(server.port, { ownConnection: true });
    try {
      await expect(impostor.check(charge(PAYMENTS))).rejects.toMatchObject({
        code: grpc.status.UNAVAILABLE,
      });
      await expect(anonymous.check(charge(PAYMENTS))).rejects.toMatchObject({
        code: grpc.status.UNAVAILABLE,
      });
      await expect(plaintext.check(charge(PAYMENTS), 2000)).rejects.toBeDefined();
    } finally {
      impostor.close();
      anonymous.close();
      plaintext.close();
    }
  });
});

describe('the HTTP mode over TLS: only gateway askers (it carries no destination identity)', () => {
  const ca = new TestCa('http-askers');
  let server: TestServer;

  beforeAll(async () => {
    const serverCert = ca.issue('gatehouse', 'DNS:localhost,IP:127.0.0.1', [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
    ]);
    server = await startTestServer({
      policiesDir: gatewayExamplePolicies(),
      trustXfcc: true,
      http: { port: 0, dialect: 'envoy' },
      askers: {
        tls: { certFile: serverCert.cert, keyFile: serverCert.key, clientCaFile: ca.cert },
        askers: [],
        gateways: [GATEWAY],
        fromXfcc: false,
      },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const get = (identity: Issued | undefined): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: server.app.http!.port,
          path: '/v1/orders/7',
          method: 'GET',
          servername: 'localhost',
          agent: false,
          ca: readFileSync(ca.cert),
          ...(identity
            ? { cert: readFileSync(identity.cert), key: readFileSync(identity.key) }
            : {}),
          headers: { host: 'orders', 'x-forwarded-client-cert': `URI=${WEB}` },
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  test('a gateway asks; a sidecar (no destination to match) is refused before deciding; no certificate fails TLS', async () => {
    expect((await get(ca.issue('gw', `URI:${GATEWAY}`))).status).toBe(200);
    const refused = await get(ca.issue('sidecar', `URI:${PAYMENTS}`));
    expect(refused).toMatchObject({
      status: 403,
      body: expect.stringContaining('asker is not authorised'),
    });
    await expect(get(undefined)).rejects.toBeDefined();
    expect(await metricsText(server)).toMatch(
      /^gatehouse_asker_refusals_total\{reason="not_own_destination"\} 1$/m,
    );
  });
});

describe("the asker from Gatehouse's own sidecar (x-forwarded-client-cert metadata)", () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({
      policiesDir: EXAMPLE_POLICIES,
      askers: { askers: [], gateways: [], fromXfcc: true },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const ask = (metadata: grpc.Metadata, request: unknown): Promise<CheckResponseMessage> => {
    const protos = loadProtos();
    const client = new protos.AuthorizationClient(
      `127.0.0.1:${server.port}`,
      grpc.credentials.createInsecure(),
    ) as grpc.Client & Record<string, Function>;
    return new Promise<CheckResponseMessage>((resolve, reject) =>
      client['Check']!(
        request,
        metadata,
        { deadline: Date.now() + 5000 },
        (err: grpc.ServiceError | null, res: CheckResponseMessage) =>
          err ? reject(err) : resolve(res),
      ),
    ).finally(() => client.close());
  };
  const xfcc = (...values: string[]): grpc.Metadata => {
    const m = new grpc.Metadata();
    for (const v of values) m.add('x-forwarded-client-cert', v);
    return m;
  };

  test('the sidecar-forwarded asker asks about itself; about another workload it is refused', async () => {
    expect(
      (
        await ask(
          xfcc(`By=spiffe://shop.example/ns/gatehouse-system/sa/gatehouse;URI=${PAYMENTS}`),
          charge(PAYMENTS),
        )
      ).status?.code ?? 0,
    ).toBe(0);
    await expect(ask(xfcc(`URI=${PAYMENTS}`), charge(CUSTOMERS))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });
  });

  test('no XFCC, two XFCC values, or one that does not parse: refused', async () => {
    await expect(ask(new grpc.Metadata(), charge(PAYMENTS))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });
    await expect(
      ask(xfcc(`URI=${PAYMENTS}`, `URI=${PAYMENTS}`), charge(PAYMENTS)),
    ).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await expect(ask(xfcc('URI="unterminated'), charge(PAYMENTS))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });
  });
});

describe('spiffeUriSan', () => {
  test.each([
    ['URI:spiffe://td/a', 'spiffe://td/a'],
    ['DNS:x, URI:spiffe://td/a', 'spiffe://td/a'],
    ['URI:spiffe://td/a, URI:spiffe://td/b', undefined],
    ['URI:https://td/a', undefined],
    [undefined, undefined],
  ])('%s → %s', (san, id) => expect(spiffeUriSan(san)).toBe(id));
});
