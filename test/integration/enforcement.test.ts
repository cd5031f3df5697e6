import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { AdminServer } from '../../src/admin/admin-server';
import { auditRecord } from '../../src/audit/audit-log';
import { verifyAuditText } from '../../src/audit/chain';
import { MemoryGrantTracker } from '../../src/grants/memory';
import type { Decision } from '../../src/pipeline/decision';
import { DecisionEngine } from '../../src/pipeline/engine';
import { TestCredentials } from '../../src/policy-test/credentials';
import type { PolicySet } from '../../src/policy/types';
import { MemoryQuarantineState } from '../../src/quarantine/memory';
import { MemoryBucketStore } from '../../src/ratelimit/memory-store';
import { toCheckResponse, type CheckResponseMessage } from '../../src/respond/check-response';
import {
  auditRecordFor,
  decisionIdOf,
  deepStruct,
  enforcementRequest,
  expect403,
  isAllowed,
  readText,
  within,
  type EnforcementRequestSpec,
} from '../helpers/enforcement';
import { engineFor, loadSet } from '../helpers/engine';
import { checkClient, headerMap, type CheckClient } from '../helpers/grpc-client';
import { policyDir } from '../helpers/policies';
import { startTestServer, type TestServer } from '../helpers/server';
import { DEFAULT_TRANSPORT_LIMITS } from '../../src/server/limits';

/**
 * The enforcement features end to end: a real Gatehouse in this process on a policy directory
 * written here, asked over loopback by a real gRPC client. Every case asserts the answer on the
 * wire and the audit record of the same decision (joined by x-gatehouse-decision).
 */

const TD = 'spiffe://shop.example';
const WEB = `${TD}/ns/frontend/sa/web`;
const CHECKOUT = `${TD}/ns/checkout/sa/web`;
const EXPORTER = `${TD}/ns/reports/sa/exporter`;
const OTHER_REPORTER = `${TD}/ns/reports/sa/other`;
const CANARY = `${TD}/ns/reports/sa/canary`;
const MALLORY = `${TD}/ns/frontend/sa/mallory`;
const JWT_CALLER = `${TD}/ns/jobs/sa/reporter`;
const JWT_AUDIENCE = 'gatehouse-test';

/** Distinctive secret-like strings: none may ever come back on the wire or reach the audit log. */
const SECRET = 'sk_live_PAYLOAD_SECRET_7Qx9Z';
const SECRET_JSON = 'sk_live_BROKEN_JSON_SECRET_4kP2';
const SECRET_RAW = 'sk_live_RAW_BODY_SECRET_88aa';
const SECRET_DRY = 'sk_live_DRYRUN_SECRET_51c0';
const SECRET_CARD = '4111111111111111';

const REGION_LABEL = 'topology.kubernetes.io/region';
const JWT_NS = 'envoy.filters.http.jwt_authn';

const POLICIES: Record<string, string> = {
  'conditions.yaml': `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: conds }
spec:
  hosts: [conds]
  rules:
    - name: by-header
      paths: [/h]
      allow: [${TD}/**]
      when: 'request.headers[?"x-tenant"].orValue("") == "acme"'
    - name: by-query
      paths: [/q]
      allow: [${TD}/**]
      when: 'request.query[?"mode"].orValue("") == "read"'
    - name: by-segments
      paths: [/seg]
      allow: [${TD}/**]
      when: 'caller.segments.size() == 4 && caller.segments[1] == "frontend"'
    - name: by-context
      paths: [/ctx]
      allow: [${TD}/**]
      when: 'context[?"tier"].orValue("") == "gold"'
    - name: by-label
      paths: [/lbl]
      allow: [${TD}/**]
      when: 'destination.labels[?"zone"].orValue("") == "eu"'
    - name: by-metadata
      paths: [/meta]
      allow: [${TD}/**]
      when: '"${JWT_NS}" in metadata && metadata["${JWT_NS}"].claims.role == "admin"'
    # The first rule would allow; the second cannot be evaluated: the request is denied.
    - name: plain-allow
      paths: [/err]
      allow: [${TD}/**]
    - name: broken
      paths: [/err]
      allow: [${TD}/**]
      when: 'request.headers["x-missing"] == "1"'
    - name: pick
      paths: [/pick]
      allow: [${TD}/**]
      when: 'request.query[?request.headers[?"x-pick"].orValue("")].orValue("") == "1"'
`,
  'payloads.yaml': `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: payloads }
spec:
  hosts: [payloads]
  rules:
    - name: create-item
      methods: [POST]
      paths: [/v1/items]
      allow: [${TD}/**]
      body:
        maxBytes: 256
        contentTypes: [application/json]
        schema:
          type: object
          additionalProperties: false
          required: [name]
          properties:
            name: { type: string, minLength: 1, maxLength: 20 }
            qty: { type: integer, minimum: 1 }
    - name: bulk
      methods: [POST]
      paths: [/v1/bulk]
      allow: [${TD}/**]
      body:
        schema: { type: object }
`,
  'residency.yaml': `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: residency }
spec:
  hosts: [residency]
  rules:
    - name: by-label
      paths: [/label]
      allow: [${TD}/**]
      residency: { regions: [eu-west-1, eu-central-1], regionFrom: 'label:${REGION_LABEL}' }
    - name: by-context
      paths: [/context]
      allow: [${TD}/**]
      residency: { regions: [eu-west-1], regionFrom: 'context:region' }
    - name: by-header
      paths: [/header]
      allow: [${TD}/**]
      residency: { regions: [eu-west-1], regionFrom: 'header:x-data-region' }
    - name: mtls-only
      paths: [/mtls]
      allow: [${TD}/**]
      require: mtls
    - name: any-transport
      paths: [/any]
      allow: [${TD}/**]
`,
  'open.yaml': `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: open }
spec:
  hosts: [open, payments.shop.svc.cluster.local]
  rules:
    - name: anything
      allow: [${TD}/**]
`,
  'vault.yaml': `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: vault }
spec:
  hosts: [vault]
  quarantine: { denials: 3, window: 1m, duration: 15m, scope: mesh }
  rules:
    - name: secrets
      paths: [/secrets/**]
      allow: [${TD}/ns/ops/**]
`,
  'shadow.yaml': `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: shadow }
spec:
  hosts: [shadow]
  mode: dry-run
  rules:
    - name: cond
      paths: [/cond]
      allow: [${TD}/**]
      when: 'request.headers[?"x-flag"].orValue("") == "on"'
    - name: cond-err
      paths: [/cond-err]
      allow: [${TD}/**]
      when: 'request.headers["x-missing"] == "1"'
    - name: body
      methods: [POST]
      paths: [/body]
      allow: [${TD}/**]
      body:
        maxBytes: 128
        contentTypes: [application/json]
        schema:
          type: object
          additionalProperties: false
          properties: { name: { type: string, maxLength: 8 } }
    - name: res
      paths: [/res]
      allow: [${TD}/**]
      residency: { regions: [eu-west-1], regionFrom: 'label:${REGION_LABEL}' }
`,
  'workloads.yaml': `
apiVersion: gatehouse/v1
kind: WorkloadPolicy
metadata: { name: exporter }
spec:
  workload: ${EXPORTER}
  refuse:
    - name: never-payments
      hosts: [payments.shop.svc.cluster.local]
    - name: no-admin-deletes
      methods: [DELETE]
      paths: [/admin/**]
    - name: no-card-data
      fields: [card.number, customer.ssn]
    - name: no-session-cookies
      headers: [cookie]
---
apiVersion: gatehouse/v1
kind: WorkloadPolicy
metadata: { name: canary }
spec:
  workload: ${CANARY}
  mode: dry-run
  refuse:
    - name: no-session-cookies
      headers: [cookie]
`,
};

describe('enforcement features over gRPC (conditions, payloads, residency, opt-outs, quarantine, dry-run)', () => {
  let server: TestServer;
  let client: CheckClient;
  let admin: AdminServer;
  let adminPort: number;
  let dir: string;
  let jwt: string;

  beforeAll(async () => {
    dir = policyDir(POLICIES);
    const credentials = new TestCredentials();
    jwt = await credentials.jwt({ sub: JWT_CALLER }, JWT_AUDIENCE);
    server = await within(
      10_000,
      'server start',
      // Receive limit raised (--grpc-max-receive) so bodies past the contracts' 1 MiB bound reach the engine.
      startTestServer({
        policiesDir: dir,
        trustBundles: credentials.trustBundles(),
        jwt: { audience: JWT_AUDIENCE, leewaySeconds: 5 },
        transport: { ...DEFAULT_TRANSPORT_LIMITS, maxReceiveBytes: 4 * 1024 * 1024 },
      }),
    );
    client = checkClient(server.port);
    admin = new AdminServer(server.app.adminProviders(), pino({ level: 'silent' }));
    adminPort = await within(5_000, 'admin listen', admin.listen('127.0.0.1', 0));
  });

  afterAll(async () => {
    client?.close();
    await admin?.close();
    await server?.stop();
  });

  /** One check on the wire, with a bounded deadline. */
  const check = (spec: EnforcementRequestSpec): Promise<CheckResponseMessage> =>
    client.check(enforcementRequest(spec), 5_000);

  /** The audit record of the decision behind `res`. */
  async function recordOf(res: CheckResponseMessage): Promise<Record<string, unknown>> {
    return auditRecordFor(await server.auditRecords(), decisionIdOf(res));
  }

  async function expectAllowed(
    spec: EnforcementRequestSpec,
    rule?: string,
  ): Promise<Record<string, unknown>> {
    const res = await check(spec);
    if (!isAllowed(res)) throw new Error(`expected an allow, got ${JSON.stringify(res)}`);
    const upstream = headerMap(res.okResponse!.headers);
    expect(upstream['x-gatehouse-caller']).toBe(spec.principal);
    const record = await recordOf(res);
    expect(record).toMatchObject({
      result: 'allow',
      status: 200,
      reason_code: 'allowed',
      caller: spec.principal ?? null,
    });
    if (rule !== undefined) expect(record['rule']).toBe(rule);
    expect(record['would_deny']).toBeUndefined();
    return record;
  }

  /** A 403 on the wire and in the audit log, with the reason code and a reason containing `reason`. */
  async function expectDenied(
    spec: EnforcementRequestSpec,
    code: string,
    reason: string | RegExp,
  ): Promise<{
    body: { reason: string };
    record: Record<string, unknown>;
    res: CheckResponseMessage;
  }> {
    const res = await check(spec);
    const body = expect403(res);
    if (typeof reason === 'string') expect(body.reason).toContain(reason);
    else expect(body.reason).toMatch(reason);
    const record = await recordOf(res);
    expect(record).toMatchObject({
      result: 'deny',
      status: 403,
      reason_code: code,
      reason: body.reason,
    });
    expect(record['would_deny']).toBeUndefined();
    return { body, record, res };
  }

  /** A dry-run allow whose audit record carries the denial that was not enforced. */
  async function expectWouldDeny(
    spec: EnforcementRequestSpec,
    code: string,
    reason: string | RegExp,
  ): Promise<Record<string, unknown>> {
    const res = await check(spec);
    if (!isAllowed(res)) throw new Error(`expected a dry-run allow, got ${JSON.stringify(res)}`);
    const record = await recordOf(res);
    expect(record).toMatchObject({
      result: 'allow',
      status: 200,
      reason_code: 'allowed',
      msg: 'would deny (dry-run)',
    });
    const would = record['would_deny'] as { status: number; reason_code: string; reason: string };
    expect(would).toMatchObject({ status: 403, reason_code: code });
    if (typeof reason === 'string') expect(would.reason).toContain(reason);
    else expect(would.reason).toMatch(reason);
    return record;
  }

  const json = (value: unknown): { body: string; headers: Record<string, string> } => {
    const body = JSON.stringify(value);
    return {
      body,
      headers: {
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
      },
    };
  };

  describe('when: conditions in CEL', () => {
    const req = (p: string, extra: EnforcementRequestSpec = {}): EnforcementRequestSpec => ({
      principal: WEB,
      host: 'conds',
      method: 'GET',
      path: p,
      ...extra,
    });

    test('on a header', async () => {
      await expectAllowed(req('/h', { headers: { 'x-tenant': 'acme' } }), 'by-header');
      await expectDenied(
        req('/h', { headers: { 'x-tenant': 'globex' } }),
        'no_matching_rule',
        'no rule of policy conds matches GET /h',
      );
      await expectDenied(req('/h'), 'no_matching_rule', 'no rule of policy conds matches GET /h');
    });

    test('on the query (request.query[?"mode"])', async () => {
      await expectAllowed(req('/q?mode=read&x=1'), 'by-query');
      await expectAllowed(req('/q?mode=re%61d'), 'by-query');
      await expectDenied(req('/q?mode=write'), 'no_matching_rule', 'matches GET /q');
      await expectDenied(req('/q'), 'no_matching_rule', 'matches GET /q');
      // The first value of a repeated name is the one the condition sees.
      await expectDenied(req('/q?mode=write&mode=read'), 'no_matching_rule', 'matches GET /q');
    });

    test('on caller.segments', async () => {
      await expectAllowed(req('/seg'), 'by-segments');
      await expectDenied(
        req('/seg', { principal: CHECKOUT }),
        'no_matching_rule',
        'matches GET /seg',
      );
    });

    test('on context extensions', async () => {
      await expectAllowed(req('/ctx', { contextExtensions: { tier: 'gold' } }), 'by-context');
      await expectDenied(
        req('/ctx', { contextExtensions: { tier: 'silver' } }),
        'no_matching_rule',
        'matches GET /ctx',
      );
      await expectDenied(req('/ctx'), 'no_matching_rule', 'matches GET /ctx');
    });

    test('on destination labels', async () => {
      await expectAllowed(req('/lbl', { labels: { zone: 'eu' } }), 'by-label');
      await expectDenied(
        req('/lbl', { labels: { zone: 'us' } }),
        'no_matching_rule',
        'matches GET /lbl',
      );
      await expectDenied(req('/lbl'), 'no_matching_rule', 'matches GET /lbl');
    });

    test('on metadata_context (jwt_authn-like namespace)', async () => {
      const claims = (role: string) => ({
        [JWT_NS]: { claims: { sub: 'user-1', role, groups: ['a', 'b'] } },
      });
      await expectAllowed(req('/meta', { metadata: claims('admin') }), 'by-metadata');
      await expectDenied(
        req('/meta', { metadata: claims('viewer') }),
        'no_matching_rule',
        'matches GET /meta',
      );
      // No such namespace: `in` short-circuits to false, not an error.
      await expectDenied(
        req('/meta', { metadata: { 'some.other.filter': { x: 1 } } }),
        'no_matching_rule',
        'matches GET /meta',
      );
      await expectDenied(req('/meta'), 'no_matching_rule', 'matches GET /meta');
      // The namespace without `claims`: evaluation fails → condition_error, never an allow.
      await expectDenied(
        req('/meta', { metadata: { [JWT_NS]: { other: 'x' } } }),
        'condition_error',
        'condition of rule by-metadata of policy conds could not be evaluated',
      );
    });

    test('an evaluation error (missing key without `in` or `[?]`) is 403 condition_error even though another rule allows', async () => {
      const { body, record } = await expectDenied(
        req('/err'),
        'condition_error',
        'condition of rule broken of policy conds could not be evaluated',
      );
      expect(body.reason.length).toBeLessThan(400);
      expect(record['rule']).toBe('broken');
      // Only when the key is there does the rule evaluate; the first rule then allows.
      await expectAllowed(req('/err', { headers: { 'x-missing': '1' } }), 'plain-allow');
      await expectAllowed(req('/err', { headers: { 'x-missing': '0' } }), 'plain-allow');
    });
  });

  describe('body contracts', () => {
    const post = (p: string, extra: EnforcementRequestSpec = {}): EnforcementRequestSpec => ({
      principal: WEB,
      host: 'payloads',
      method: 'POST',
      path: p,
      ...extra,
    });

    function expectNoSecret(secret: string, ...things: unknown[]): void {
      for (const thing of things) expect(JSON.stringify(thing)).not.toContain(secret);
    }

    test('a valid JSON body is allowed', async () => {
      await expectAllowed(post('/v1/items', json({ name: 'widget', qty: 2 })), 'create-item');
      // content-type parameters and case do not matter
      const body = JSON.stringify({ name: 'widget' });
      await expectAllowed(
        post('/v1/items', {
          body,
          headers: {
            'content-type': 'Application/JSON; charset=utf-8',
            'content-length': String(body.length),
          },
        }),
        'create-item',
      );
    });

    test("a schema violation is 403 payload_rejected with ajv's first error, and the payload is echoed nowhere", async () => {
      const tooLong = await expectDenied(
        post('/v1/items', json({ name: SECRET })),
        'payload_rejected',
        'rule create-item of policy payloads: request body does not match the schema: /name must NOT have more than 20 characters',
      );
      expectNoSecret(SECRET, tooLong.res, tooLong.record);

      const extra = await expectDenied(
        post('/v1/items', json({ name: 'ok', token: SECRET })),
        'payload_rejected',
        'request body does not match the schema: / must NOT have additional properties',
      );
      expectNoSecret(SECRET, extra.res, extra.record);

      const wrongType = await expectDenied(
        post('/v1/items', json({ name: 'ok', qty: SECRET })),
        'payload_rejected',
        'request body does not match the schema: /qty must be integer',
      );
      expectNoSecret(SECRET, wrongType.res, wrongType.record);

      await expectDenied(
        post('/v1/items', json({ qty: 1 })),
        'payload_rejected',
        "request body does not match the schema: / must have required property 'name'",
      );
      // Only the first error: one reason, not a list.
      const many = await expectDenied(
        post('/v1/items', json({ qty: 'x', more: SECRET })),
        'payload_rejected',
        'request body does not match the schema: ',
      );
      expect(many.body.reason.match(/must/g)).toHaveLength(1);
      expectNoSecret(SECRET, many.res, many.record);
    });

    test('too large: by the forwarded body, and by content-length alone', async () => {
      const big = JSON.stringify({ name: 'x', pad: SECRET.repeat(20) });
      const byBody = await expectDenied(
        post('/v1/items', { body: big, headers: { 'content-type': 'application/json' } }),
        'payload_rejected',
        `request body is ${Buffer.byteLength(big)} bytes, more than the 256 allowed`,
      );
      expectNoSecret(SECRET, byBody.res, byBody.record);
      await expectDenied(
        post('/v1/items', {
          headers: { 'content-type': 'application/json', 'content-length': '100000' },
        }),
        'payload_rejected',
        'request body is 100000 bytes, more than the 256 allowed',
      );
      // A small forwarded body does not hide a larger declared length.
      await expectDenied(
        post('/v1/items', {
          body: '{"name":"x"}',
          headers: { 'content-type': 'application/json', 'content-length': '5000' },
        }),
        'payload_rejected',
        'request body is 5000 bytes, more than the 256 allowed',
      );
    });

    test('wrong or missing content type', async () => {
      const body = JSON.stringify({ name: 'widget' });
      await expectDenied(
        post('/v1/items', {
          body,
          headers: { 'content-type': 'text/plain', 'content-length': String(body.length) },
        }),
        'payload_rejected',
        "content type 'text/plain' is not accepted (expected application/json)",
      );
      const noType = enforcementRequest(
        post('/v1/items', { body, headers: { 'content-length': String(body.length) } }),
      ) as { attributes: { request: { http: { headers: Record<string, string> } } } };
      delete noType.attributes.request.http.headers['content-type'];
      const res = await client.check(noType, 5_000);
      expect(expect403(res).reason).toContain('content type (none) is not accepted');
      expect((await recordOf(res))['reason_code']).toBe('payload_rejected');
    });

    test('a body Envoy did not forward is malformed: with content-length > 0, chunked, or an HTTP/2 POST without either', async () => {
      await expectDenied(
        post('/v1/items', {
          headers: { 'content-type': 'application/json', 'content-length': '40' },
        }),
        'malformed_request',
        'the body was not forwarded by the proxy (configure with_request_body)',
      );
      await expectDenied(
        post('/v1/items', {
          headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        }),
        'malformed_request',
        /body was not forwarded/,
      );
      await expectDenied(post('/v1/items'), 'malformed_request', /body was not forwarded/);
      // No body at all against a schema that needs one.
      await expectDenied(
        post('/v1/items', { headers: { 'content-length': '0' } }),
        'payload_rejected',
        'the request has no body',
      );
    });

    test('x-envoy-auth-partial-body: true is denied (a truncated body is not checked)', async () => {
      const { body, headers } = json({ name: 'widget' });
      await expectDenied(
        post('/v1/items', { body, headers: { ...headers, 'x-envoy-auth-partial-body': 'true' } }),
        'malformed_request',
        'the proxy truncated the body',
      );
      await expectAllowed(
        post('/v1/items', { body, headers: { ...headers, 'x-envoy-auth-partial-body': 'false' } }),
        'create-item',
      );
    });

    test('invalid JSON is denied without echoing it', async () => {
      const broken = `{"name": "${SECRET_JSON}", `;
      const denied = await expectDenied(
        post('/v1/items', {
          body: broken,
          headers: { 'content-type': 'application/json', 'content-length': String(broken.length) },
        }),
        'payload_rejected',
        'rule create-item of policy payloads: the request body is not valid JSON',
      );
      expectNoSecret(SECRET_JSON, denied.res, denied.record);
    });

    test('raw_body (pack_as_bytes) is read as bytes', async () => {
      const good = Buffer.from(JSON.stringify({ name: 'widget', qty: 1 }));
      await expectAllowed(
        post('/v1/items', {
          rawBody: good,
          headers: { 'content-type': 'application/json', 'content-length': String(good.length) },
        }),
        'create-item',
      );
      const bad = Buffer.from(JSON.stringify({ name: 'widget', qty: SECRET_RAW }));
      const denied = await expectDenied(
        post('/v1/items', {
          rawBody: bad,
          headers: { 'content-type': 'application/json', 'content-length': String(bad.length) },
        }),
        'payload_rejected',
        '/qty must be integer',
      );
      expectNoSecret(SECRET_RAW, denied.res, denied.record);
      const notUtf8 = Buffer.from([0x7b, 0xff, 0x00, 0x7d]);
      await expectDenied(
        post('/v1/items', {
          rawBody: notUtf8,
          headers: { 'content-type': 'application/json', 'content-length': '4' },
        }),
        'malformed_request',
        'the request body is not valid UTF-8',
      );
      const notJson = Buffer.from('{"a":');
      await expectDenied(
        post('/v1/items', {
          rawBody: notJson,
          headers: { 'content-type': 'application/json', 'content-length': '5' },
        }),
        'payload_rejected',
        'the request body is not valid JSON',
      );
    });

    test('no payload secret reached the audit log at all', async () => {
      await server.auditRecords(); // flush
      const text = readText(server.auditFile);
      for (const secret of [SECRET, SECRET_JSON, SECRET_RAW]) expect(text).not.toContain(secret);
    });
  });

  describe('data residency and required transport', () => {
    const get = (p: string, extra: EnforcementRequestSpec = {}): EnforcementRequestSpec => ({
      principal: WEB,
      host: 'residency',
      method: 'GET',
      path: p,
      ...extra,
    });

    test('region from a destination label', async () => {
      await expectAllowed(get('/label', { labels: { [REGION_LABEL]: 'eu-west-1' } }), 'by-label');
      await expectAllowed(
        get('/label', { labels: { [REGION_LABEL]: 'eu-central-1' } }),
        'by-label',
      );
      await expectDenied(
        get('/label', { labels: { [REGION_LABEL]: 'us-east-1' } }),
        'residency_violation',
        "rule by-label of policy residency: data may not flow to region 'us-east-1' (allowed: eu-west-1, eu-central-1)",
      );
      await expectDenied(
        get('/label'),
        'residency_violation',
        `destination region is unknown (label '${REGION_LABEL}' is not set)`,
      );
      await expectDenied(
        get('/label', { labels: { [REGION_LABEL]: '' } }),
        'residency_violation',
        'destination region is unknown',
      );
      // A region in the wrong place (a header) does not count for a label rule.
      await expectDenied(
        get('/label', {
          headers: { [REGION_LABEL]: 'eu-west-1' },
          contextExtensions: { [REGION_LABEL]: 'eu-west-1' },
        }),
        'residency_violation',
        'destination region is unknown',
      );
    });

    test('region from a context extension', async () => {
      await expectAllowed(
        get('/context', { contextExtensions: { region: 'eu-west-1' } }),
        'by-context',
      );
      await expectDenied(
        get('/context', { contextExtensions: { region: 'ap-south-1' } }),
        'residency_violation',
        "data may not flow to region 'ap-south-1'",
      );
      await expectDenied(
        get('/context', { labels: { region: 'eu-west-1' } }),
        'residency_violation',
        "destination region is unknown (context 'region' is not set)",
      );
    });

    test('region from a header', async () => {
      await expectAllowed(
        get('/header', { headers: { 'x-data-region': 'eu-west-1' } }),
        'by-header',
      );
      await expectDenied(
        get('/header', { headers: { 'x-data-region': 'EU-WEST-1' } }),
        'residency_violation',
        "data may not flow to region 'EU-WEST-1'",
      );
      await expectDenied(
        get('/header'),
        'residency_violation',
        "destination region is unknown (header 'x-data-region' is not set)",
      );
      // A hostile region value is clipped in the reason.
      const { body } = await expectDenied(
        get('/header', { headers: { 'x-data-region': 'r'.repeat(5000) } }),
        'residency_violation',
        'data may not flow to region',
      );
      expect(body.reason.length).toBeLessThan(300);
    });

    test('require: mtls — a JWT-SVID-only caller is 403 mtls_required; an mTLS principal is allowed', async () => {
      await expectAllowed(get('/mtls'), 'mtls-only');
      const denied = await check({
        host: 'residency',
        method: 'GET',
        path: '/mtls',
        headers: { authorization: `Bearer ${jwt}` },
      });
      const body = expect403(denied);
      expect(body.reason).toContain(
        'rule mtls-only of policy residency requires an mTLS identity, not a jwt credential',
      );
      const record = await recordOf(denied);
      expect(record).toMatchObject({
        result: 'deny',
        status: 403,
        reason_code: 'mtls_required',
        caller: JWT_CALLER,
        identity_source: 'jwt',
        rule: 'mtls-only',
      });
      expect(JSON.stringify(denied)).not.toContain(jwt);
      expect(JSON.stringify(record)).not.toContain(jwt);
      // The same token on a rule without the requirement is accepted: the denial is the transport, not the token.
      const ok = await check({
        host: 'residency',
        method: 'GET',
        path: '/any',
        headers: { authorization: `Bearer ${jwt}` },
      });
      expect(isAllowed(ok)).toBe(true);
      expect(headerMap(ok.okResponse!.headers)['x-gatehouse-caller']).toBe(JWT_CALLER);
      expect(await recordOf(ok)).toMatchObject({ reason_code: 'allowed', identity_source: 'jwt' });
    });
  });

  describe('WorkloadPolicy opt-outs (the caller refuses; refusals beat any allow)', () => {
    const as = (caller: string, extra: EnforcementRequestSpec): EnforcementRequestSpec => ({
      principal: caller,
      host: 'open',
      method: 'POST',
      path: '/v1/things',
      ...extra,
    });

    async function refused(
      spec: EnforcementRequestSpec,
      refusal: string,
      what: string,
    ): Promise<Record<string, unknown>> {
      const { record } = await expectDenied(
        spec,
        'caller_opt_out',
        `caller ${EXPORTER} may not make this request: it declared it never sends ${what} (refusal ${refusal}) (WorkloadPolicy exporter)`,
      );
      // Decided before the destination's rules: no rule, and the (allowing) policy is not what denied.
      expect(record['rule']).toBeNull();
      // The same request from another caller is allowed by the destination.
      await expectAllowed({ ...spec, principal: OTHER_REPORTER });
      return record;
    }

    test('baseline: the exporter is allowed where it refuses nothing', async () => {
      await expectAllowed(
        as(EXPORTER, json({ card: { brand: 'visa' }, customer: { name: 'x' } })),
        'anything',
      );
      await expectAllowed(as(EXPORTER, { method: 'DELETE', path: '/v1/things/1' }), 'anything');
      await expectAllowed(as(EXPORTER, { method: 'GET', path: '/admin/x' }), 'anything');
    });

    test('refused host', async () => {
      await refused(
        as(EXPORTER, {
          host: 'payments.shop.svc.cluster.local:8443',
          method: 'GET',
          path: '/v1/charges',
        }),
        'never-payments',
        'this route',
      );
    });

    test('refused route (method + path)', async () => {
      await refused(
        as(EXPORTER, { method: 'DELETE', path: '/admin/users/7' }),
        'no-admin-deletes',
        'this route',
      );
    });

    test('refused header', async () => {
      await refused(
        as(EXPORTER, { method: 'GET', headers: { cookie: 'session=abc' } }),
        'no-session-cookies',
        'header cookie',
      );
    });

    test('refused body field: nested, and inside arrays', async () => {
      const nested = await refused(
        as(EXPORTER, json({ card: { number: SECRET_CARD, brand: 'visa' } })),
        'no-card-data',
        'field card.number',
      );
      expect(JSON.stringify(nested)).not.toContain(SECRET_CARD);
      await refused(
        as(EXPORTER, json({ card: [{ brand: 'visa' }, { number: SECRET_CARD }] })),
        'no-card-data',
        'field card.number',
      );
      await refused(
        as(EXPORTER, json([{ id: 1 }, { customer: { ssn: '078-05-1120' } }])),
        'no-card-data',
        'field customer.ssn',
      );
      await refused(
        as(EXPORTER, json({ customer: { ssn: null } })),
        'no-card-data',
        'field customer.ssn',
      );
      // Near misses are not refusals.
      await expectAllowed(
        as(EXPORTER, json({ card: { numbers: [1] }, number: 1, customer: 'ssn' })),
        'anything',
      );
    });

    test('an unreadable body, when fields are refused, is denied', async () => {
      const notForwarded = as(EXPORTER, {
        headers: { 'content-type': 'application/json', 'content-length': '64' },
      });
      await expectDenied(
        notForwarded,
        'malformed_request',
        'it refuses to send fields card.number, customer.ssn and the request body cannot be read: the body was not forwarded by the proxy',
      );
      await expectAllowed({ ...notForwarded, principal: OTHER_REPORTER });
      const broken = `{"card": {"number": "${SECRET_CARD}"`;
      const denied = await expectDenied(
        as(EXPORTER, {
          body: broken,
          headers: { 'content-type': 'application/json', 'content-length': String(broken.length) },
        }),
        'caller_opt_out',
        'and the request body is not valid JSON',
      );
      expect(JSON.stringify(denied.res)).not.toContain(SECRET_CARD);
      const partial = json({ id: 1 });
      await expectDenied(
        as(EXPORTER, {
          body: partial.body,
          headers: { ...partial.headers, 'x-envoy-auth-partial-body': 'true' },
        }),
        'malformed_request',
        'the proxy truncated the body',
      );
    });

    test('a refusal beats a dry-run-free allow on any destination, and the audit names the refusal', async () => {
      const res = await check(
        as(EXPORTER, {
          host: 'conds',
          method: 'GET',
          path: '/h',
          headers: { 'x-tenant': 'acme', cookie: 'a=b' },
        }),
      );
      expect(expect403(res).reason).toContain('refusal no-session-cookies');
      expect((await recordOf(res))['reason_code']).toBe('caller_opt_out');
    });

    test('a WorkloadPolicy in mode dry-run allows, with would_deny caller_opt_out in the audit record', async () => {
      const record = await expectWouldDeny(
        as(CANARY, { method: 'GET', headers: { cookie: 'session=abc' } }),
        'caller_opt_out',
        `caller ${CANARY} may not make this request: it declared it never sends header cookie (refusal no-session-cookies) (WorkloadPolicy canary)`,
      );
      expect(record).toMatchObject({
        caller: CANARY,
        policy: 'open',
        rule: 'anything',
        dry_run: false,
      });
      // A real denial by the destination still denies under a dry-run WorkloadPolicy.
      await expectDenied(
        {
          principal: CANARY,
          host: 'vault',
          method: 'GET',
          path: '/secrets/x',
          headers: { cookie: 'a' },
        },
        'caller_not_allowed',
        `caller ${CANARY} is not allowed by policy vault`,
      );
      await expectAllowed(as(CANARY, { method: 'GET' }), 'anything');
    });
  });

  describe('dry-run policies cover every feature', () => {
    const shadow = (p: string, extra: EnforcementRequestSpec = {}): EnforcementRequestSpec => ({
      principal: WEB,
      host: 'shadow',
      method: 'GET',
      path: p,
      ...extra,
    });

    test('condition false → would_deny no_matching_rule; condition error → would_deny condition_error', async () => {
      await expectAllowed(shadow('/cond', { headers: { 'x-flag': 'on' } }), 'cond');
      const falseRecord = await expectWouldDeny(
        shadow('/cond'),
        'no_matching_rule',
        'no rule of policy shadow matches GET /cond',
      );
      expect(falseRecord['dry_run']).toBe(true);
      const errRecord = await expectWouldDeny(
        shadow('/cond-err'),
        'condition_error',
        'condition of rule cond-err of policy shadow could not be evaluated',
      );
      expect(errRecord).toMatchObject({ dry_run: true, policy: 'shadow', rule: 'cond-err' });
    });

    test('body contract → would_deny payload_rejected (and still no echo)', async () => {
      await expectAllowed(shadow('/body', { method: 'POST', ...json({ name: 'ok' }) }), 'body');
      const record = await expectWouldDeny(
        shadow('/body', { method: 'POST', ...json({ name: SECRET_DRY }) }),
        'payload_rejected',
        '/name must NOT have more than 8 characters',
      );
      expect(JSON.stringify(record)).not.toContain(SECRET_DRY);
      await expectWouldDeny(
        shadow('/body', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': '10000' },
        }),
        'payload_rejected',
        'more than the 128 allowed',
      );
      await expectWouldDeny(
        shadow('/body', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': '12' },
        }),
        'malformed_request',
        'not forwarded by the proxy',
      );
      await server.auditRecords();
      expect(readText(server.auditFile)).not.toContain(SECRET_DRY);
    });

    test('residency → would_deny residency_violation', async () => {
      await expectAllowed(shadow('/res', { labels: { [REGION_LABEL]: 'eu-west-1' } }), 'res');
      await expectWouldDeny(
        shadow('/res', { labels: { [REGION_LABEL]: 'us-east-1' } }),
        'residency_violation',
        "data may not flow to region 'us-east-1'",
      );
      await expectWouldDeny(shadow('/res'), 'residency_violation', 'destination region is unknown');
    });
  });

  describe('quarantine after N denials in a window', () => {
    test('three denials by vault quarantine the caller everywhere; others are unaffected; audit event, chain and metric', async () => {
      // Another caller's single denial changes nothing for anyone.
      await expectDenied(
        { principal: CHECKOUT, host: 'vault', method: 'GET', path: '/secrets/a' },
        'caller_not_allowed',
        'is not allowed by policy vault',
      );
      await expectAllowed(
        { principal: MALLORY, host: 'open', method: 'GET', path: '/before' },
        'anything',
      );

      for (let i = 0; i < 3; i++) {
        await expectDenied(
          { principal: MALLORY, host: 'vault', method: 'GET', path: `/secrets/${i}` },
          'caller_not_allowed',
          `caller ${MALLORY} is not allowed by policy vault`,
        );
      }
      // Denials are counted off the answer's path: wait (bounded) until the state has them.
      const deadline = Date.now() + 5_000;
      let res = await check({ principal: MALLORY, host: 'open', method: 'GET', path: '/after' });
      while (isAllowed(res) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
        res = await check({ principal: MALLORY, host: 'open', method: 'GET', path: '/after' });
      }
      const body = expect403(res);
      expect(body.reason).toMatch(
        new RegExp(
          `^quarantined: caller ${MALLORY.replace(/[/.]/g, '\\$&')} is isolated until \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z after 3 denials by policy vault$`,
        ),
      );
      const record = await recordOf(res);
      expect(record).toMatchObject({
        result: 'deny',
        status: 403,
        reason_code: 'quarantined',
        caller: MALLORY,
        policy: 'open',
      });

      // Even a route its own policy would allow, and a request with a body, stay denied.
      await expectDenied(
        {
          principal: MALLORY,
          host: 'payloads',
          method: 'POST',
          path: '/v1/items',
          ...json({ name: 'widget' }),
        },
        'quarantined',
        'quarantined: caller',
      );
      // Other callers are unaffected.
      await expectAllowed(
        { principal: CHECKOUT, host: 'open', method: 'GET', path: '/after' },
        'anything',
      );
      await expectAllowed(
        { principal: WEB, host: 'open', method: 'GET', path: '/after' },
        'anything',
      );

      const records = await server.auditRecords();
      const enters = records.filter((r) => r['event'] === 'quarantine.enter');
      expect(enters).toHaveLength(1);
      expect(enters[0]).toMatchObject({
        event: 'quarantine.enter',
        caller: MALLORY,
        policy: 'vault',
        denials: 3,
        dry_run: false,
        msg: 'caller quarantined',
      });
      expect(
        Date.parse(enters[0]!['until'] as string) - Date.parse(enters[0]!['since'] as string),
      ).toBe(15 * 60_000);

      const verified = verifyAuditText(readText(server.auditFile));
      expect(verified.error).toBeUndefined();
      expect(verified).toMatchObject({ ok: true, chains: 1 });
      expect(verified.records).toBe(records.length);

      const metrics = await within(
        5_000,
        'GET /metrics',
        fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text()),
      );
      expect(metrics).toMatch(
        /^gatehouse_quarantine_events_total\{[^}]*event="enter"[^}]*mode="enforce"[^}]*\} 1$/m,
      );
      expect(metrics).toMatch(/^gatehouse_quarantined_callers\{mode="enforce"\} 1$/m);

      // The admin API lists the caller.
      const listed = await within(
        5_000,
        'GET /v1/quarantine',
        fetch(`http://127.0.0.1:${adminPort}/v1/quarantine`).then((r) => r.text()),
      );
      expect(listed).toContain(MALLORY);
    });
  });

  describe('hostile inputs', () => {
    test('metadata nested 40 deep is denied as malformed, never a crash; the server keeps serving', async () => {
      const res = await check({
        principal: WEB,
        host: 'conds',
        method: 'GET',
        path: '/meta',
        rawMetadata: { [JWT_NS]: deepStruct(40) },
      });
      const body = expect403(res);
      expect(body.reason).toBe('malformed request: CheckRequest bytes could not be decoded');
      expect((await recordOf(res))['reason_code']).toBe('malformed_request');
      // 30 levels is within bounds and is evaluated (the namespace has no `claims`: a condition error, not a crash).
      const shallow = await check({
        principal: WEB,
        host: 'conds',
        method: 'GET',
        path: '/meta',
        rawMetadata: { [JWT_NS]: deepStruct(30) },
      });
      expect((await recordOf(shallow))['reason_code']).toBe('condition_error');
      await expectAllowed(
        {
          principal: WEB,
          host: 'conds',
          method: 'GET',
          path: '/h',
          headers: { 'x-tenant': 'acme' },
        },
        'by-header',
      );
      // The same depth in JSON form (gatehouse check --input, HTTP adapters) is refused by the normaliser.
      let deepJson: Record<string, unknown> = { leaf: 'x' };
      for (let i = 0; i < 40; i++) deepJson = { a: deepJson };
      const { engine } = await engineFor(dir);
      const plain = enforcementRequest({
        principal: WEB,
        host: 'conds',
        method: 'GET',
        path: '/meta',
      }) as { attributes: Record<string, unknown> };
      plain.attributes['metadataContext'] = { filterMetadata: { [JWT_NS]: deepJson } };
      expect(await engine.decide(plain)).toMatchObject({
        allowed: false,
        status: 403,
        code: 'malformed_request',
        reason: 'malformed request: metadata nests too deeply',
      });
    });

    test('a 2 MiB body is denied without being parsed', async () => {
      const body = JSON.stringify({ name: 'x', pad: 'a'.repeat(2 * 1024 * 1024) });
      const headers = { 'content-type': 'application/json', 'content-length': String(body.length) };
      // A contract with no maxBytes still refuses to parse it.
      const start = Date.now();
      await expectDenied(
        { principal: WEB, host: 'payloads', method: 'POST', path: '/v1/bulk', body, headers },
        'payload_rejected',
        'the request body is larger than 1048576 bytes',
      );
      // With maxBytes, the size alone decides.
      await expectDenied(
        { principal: WEB, host: 'payloads', method: 'POST', path: '/v1/items', body, headers },
        'payload_rejected',
        `request body is ${body.length} bytes, more than the 256 allowed`,
      );
      // A refused field cannot be shown absent from a body too large to read.
      await expectDenied(
        { principal: EXPORTER, host: 'open', method: 'POST', path: '/v1/things', body, headers },
        'caller_opt_out',
        'the request body is larger than 1048576 bytes',
      );
      expect(Date.now() - start).toBeLessThan(10_000);
      // The bulk rule does admit a small object, so the denial above was the size.
      await expectAllowed(
        {
          principal: WEB,
          host: 'payloads',
          method: 'POST',
          path: '/v1/bulk',
          ...json({ any: 'thing' }),
        },
        'bulk',
      );
    });

    test('a `when` that indexes with a 10k-character header still answers', async () => {
      const long = 'k'.repeat(10_000);
      const start = Date.now();
      await expectDenied(
        {
          principal: WEB,
          host: 'conds',
          method: 'GET',
          path: '/pick',
          headers: { 'x-pick': long },
        },
        'no_matching_rule',
        'matches GET /pick',
      );
      await expectDenied(
        { principal: WEB, host: 'conds', method: 'GET', path: '/h', headers: { 'x-tenant': long } },
        'no_matching_rule',
        'matches GET /h',
      );
      await expectAllowed(
        {
          principal: WEB,
          host: 'conds',
          method: 'GET',
          path: '/pick?flag=1',
          headers: { 'x-pick': 'flag' },
        },
        'pick',
      );
      expect(Date.now() - start).toBeLessThan(5_000);
    });
  });
});

describe('grants that expire from disuse (engine with an injected clock)', () => {
  const T0 = Date.UTC(2030, 0, 1);
  const HOUR = 3_600_000;
  const REPORTER = `${TD}/ns/reports/sa/exporter`;
  const STANDING = `${TD}/ns/reports/sa/standing`;

  const reports = (extra = '') => `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: reports${extra ? `, description: '${extra}'` : ''} }
spec:
  hosts: [reports]
  rules:
    - name: export
      paths: [/export]
      allow:
        - caller: ${REPORTER}
          expiresAfterUnused: 1h
        - ${STANDING}
`;
  const shadowReports = `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: shadow-reports }
spec:
  hosts: [shadow-reports]
  mode: dry-run
  rules:
    - name: export
      paths: [/export]
      allow:
        - caller: ${REPORTER}
          expiresAfterUnused: 30m
`;
  const unrelated = (n: number) => `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: unrelated }
spec:
  hosts: [unrelated-${n}]
  rules:
    - name: r
      allow: [${TD}/**]
`;

  let sets: { base: PolicySet; otherChanged: PolicySet; changed: PolicySet };

  beforeAll(async () => {
    sets = {
      base: await loadSet(
        policyDir({
          'reports.yaml': reports(),
          'shadow.yaml': shadowReports,
          'u.yaml': unrelated(1),
        }),
      ),
      otherChanged: await loadSet(
        policyDir({
          'reports.yaml': reports(),
          'shadow.yaml': shadowReports,
          'u.yaml': unrelated(2),
        }),
      ),
      changed: await loadSet(
        policyDir({
          'reports.yaml': reports('renewed by review'),
          'shadow.yaml': shadowReports,
          'u.yaml': unrelated(2),
        }),
      ),
    };
  });

  function harness(): {
    decide: (caller: string, host?: string) => Promise<Decision>;
    at: (ms: number) => void;
    use: (set: PolicySet) => void;
  } {
    let now = T0;
    let set = sets.base;
    const engine = new DecisionEngine({
      policies: () => set,
      identity: { trustDomains: new Set(['shop.example']), trustXfcc: false },
      store: new MemoryBucketStore(),
      sink: { record: () => undefined },
      quarantine: new MemoryQuarantineState({ onEvent: () => undefined, now: () => now }),
      grants: new MemoryGrantTracker(),
      now: () => now,
    });
    return {
      decide: (caller, host = 'reports') =>
        engine.decide(
          enforcementRequest({ principal: caller, host, method: 'GET', path: '/export' }),
        ),
      at: (ms) => void (now = T0 + ms),
      use: (next) => void (set = next),
    };
  }

  test('policy versions differ where the reports document changed', () => {
    const hash = (s: PolicySet, name: string) =>
      s.policies.find((p) => p.name === name)!.contentHash;
    expect(hash(sets.otherChanged, 'reports')).toBe(hash(sets.base, 'reports'));
    expect(hash(sets.changed, 'reports')).not.toBe(hash(sets.base, 'reports'));
  });

  test('allowed while used; grant_dormant after maxIdle; allowed again once the policy changes', async () => {
    const h = harness();
    h.at(0);
    expect((await h.decide(REPORTER)).code).toBe('allowed');
    h.at(59 * 60_000);
    expect((await h.decide(REPORTER)).code).toBe('allowed'); // use restarts the clock
    h.at(59 * 60_000 + HOUR - 1);
    expect((await h.decide(REPORTER)).code).toBe('allowed');
    h.at(59 * 60_000 + HOUR - 1 + HOUR);
    const dormant = await h.decide(REPORTER);
    expect(dormant).toMatchObject({ allowed: false, status: 403, code: 'grant_dormant' });
    expect(dormant.reason).toContain(
      `grant dormant: allow entry 0 of rule export of policy reports has not been used by ${REPORTER} for 1h`,
    );
    // On the wire and in the audit record.
    const wire = toCheckResponse(dormant);
    expect(wire.status.code).toBe(7);
    expect(wire.deniedResponse!.status.code).toBe(403);
    expect(JSON.parse(wire.deniedResponse!.body)).toMatchObject({
      error: 'forbidden',
      reason: dormant.reason,
      decision_id: dormant.id,
    });
    expect(auditRecord(dormant)).toMatchObject({
      result: 'deny',
      status: 403,
      reason_code: 'grant_dormant',
      rule: 'export',
      caller: REPORTER,
    });
    // A denial is not a use: still dormant later.
    h.at(10 * HOUR);
    expect((await h.decide(REPORTER)).code).toBe('grant_dormant');
    // Entries without expiresAfterUnused never go dormant.
    expect((await h.decide(STANDING)).code).toBe('allowed');

    // Another policy's change is not a renewal of this grant.
    h.use(sets.otherChanged);
    expect((await h.decide(REPORTER)).code).toBe('grant_dormant');

    // A change of the reports policy itself (new contentHash) is a new grant: the clock restarts.
    h.use(sets.changed);
    expect((await h.decide(REPORTER)).code).toBe('allowed');
    h.at(10 * HOUR + HOUR - 1);
    expect((await h.decide(REPORTER)).code).toBe('allowed');
  });

  test('never used at all: dormant once maxIdle has passed since the grant was first seen', async () => {
    const h = harness();
    h.at(0);
    expect((await h.decide(STANDING)).code).toBe('allowed'); // first check: the engine hands the tracker the grants
    h.at(HOUR - 1);
    expect((await h.decide(REPORTER)).code).toBe('allowed');
    const h2 = harness();
    h2.at(0);
    await h2.decide(STANDING);
    h2.at(HOUR);
    expect((await h2.decide(REPORTER)).code).toBe('grant_dormant');
  });

  test('under a dry-run policy a dormant grant is allowed with would_deny grant_dormant', async () => {
    const h = harness();
    h.at(0);
    expect((await h.decide(REPORTER, 'shadow-reports')).code).toBe('allowed');
    h.at(31 * 60_000);
    const d = await h.decide(REPORTER, 'shadow-reports');
    expect(d).toMatchObject({ allowed: true, status: 200, code: 'allowed' });
    expect(d.wouldDeny).toMatchObject({ status: 403, code: 'grant_dormant' });
    expect(d.wouldDeny!.reason).toContain(
      'grant dormant: allow entry 0 of rule export of policy shadow-reports',
    );
    expect(toCheckResponse(d).status.code).toBe(0);
    expect(auditRecord(d)).toMatchObject({
      result: 'allow',
      reason_code: 'allowed',
      dry_run: true,
      would_deny: { status: 403, reason_code: 'grant_dormant' },
    });
  });
});

describe('grants that expire from disuse, on the wire (real clock, short grant, reload)', () => {
  const CALLER = `${TD}/ns/reports/sa/exporter`;
  const policy = (description: string) => `
apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: ledger, description: '${description}' }
spec:
  hosts: [ledger]
  rules:
    - name: read
      paths: [/entries]
      allow:
        - caller: ${CALLER}
          expiresAfterUnused: 1500ms
`;
  let server: TestServer;
  let client: CheckClient;
  let dir: string;

  beforeAll(async () => {
    dir = policyDir({ 'ledger.yaml': policy('v1') });
    server = await within(10_000, 'server start', startTestServer({ policiesDir: dir }));
    client = checkClient(server.port);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  test('allowed, then grant_dormant after 1.5 s idle, then allowed after the policy is changed and reloaded', async () => {
    const req = enforcementRequest({
      principal: CALLER,
      host: 'ledger',
      method: 'GET',
      path: '/entries',
    });
    expect(isAllowed(await client.check(req, 5_000))).toBe(true);
    await new Promise((r) => setTimeout(r, 1_700));
    const dormant = await client.check(req, 5_000);
    const body = expect403(dormant);
    expect(body.reason).toContain('grant dormant: allow entry 0 of rule read of policy ledger');
    const records = await server.auditRecords();
    expect(auditRecordFor(records, decisionIdOf(dormant))).toMatchObject({
      reason_code: 'grant_dormant',
      result: 'deny',
    });

    writeFileSync(path.join(dir, 'ledger.yaml'), policy('v2'));
    const reloaded = await within(10_000, 'reload', server.app.reload());
    expect(reloaded.ok).toBe(true);
    const again = await client.check(req, 5_000);
    expect(isAllowed(again)).toBe(true);
    expect(auditRecordFor(await server.auditRecords(), decisionIdOf(again))).toMatchObject({
      reason_code: 'allowed',
      policy_version: reloaded.version,
    });
  });
});
