import { parseAuditLine, type ReplayRecord } from '../../src/replay/record';
import { checkRequestOf, Redecider } from '../../src/replay/redecide';
import { loadSet } from '../helpers/engine';
import { policyDir } from '../helpers/policies';
import { EXPORTER } from '../helpers/requests';

const WEB = 'spiffe://shop.example/ns/checkout/sa/web';

const POLICIES = {
  'api.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: api }
spec:
  hosts: [api]
  rules:
    - name: plain
      methods: [GET]
      paths: [/plain]
      allow: [${WEB}]
    - name: by-metadata
      paths: [/meta]
      allow: [${WEB}]
      when: 'metadata["jwt"]["sub"] == "x"'
    - name: by-flag
      paths: [/flag]
      allow: [${WEB}]
      when: '"x-flag" in request.headers'
    - name: by-page
      paths: [/page]
      allow: [${WEB}]
      when: '"page" in request.query'
    - name: eu-label
      paths: [/label]
      allow: [${WEB}]
      residency: { regions: [eu], regionFrom: label:region }
    - name: eu-header
      paths: [/region]
      allow: [${WEB}]
      residency: { regions: [eu], regionFrom: header:x-region }
    - name: contract
      methods: [POST]
      paths: [/contract]
      allow: [${WEB}]
      body: { maxBytes: 10 }
    - name: dormant
      paths: [/grant]
      allow: [{ caller: ${WEB}, expiresAfterUnused: 30d }]
    - name: limited
      paths: [/limited]
      allow: [${WEB}]
      rateLimit: { capacity: 1, refillPerSecond: 1 }
    - name: mtls-only
      paths: [/mtls]
      allow: [${WEB}]
      require: mtls
`,
  'exporter.yaml': `apiVersion: gatehouse/v1
kind: WorkloadPolicy
metadata: { name: exporter }
spec:
  workload: ${EXPORTER}
  refuse:
    - name: no-card-data
      fields: [card.number]
`,
};

function record(fields: Record<string, unknown>): ReplayRecord {
  const parsed = parseAuditLine(
    JSON.stringify({
      msg: 'decision',
      decision_id: 'd',
      time: '2026-12-05T10:00:00.000Z',
      result: 'allow',
      reason_code: 'allowed',
      caller: WEB,
      identity_source: 'principal',
      host: 'api',
      method: 'GET',
      destination: null,
      policy: 'api',
      ...fields,
    }),
  );
  if (parsed.kind !== 'decision') throw new Error('not a decision');
  return parsed.record;
}

let redecider: Redecider;
beforeAll(async () => {
  redecider = new Redecider(await loadSet(policyDir(POLICIES)));
});

async function outcome(fields: Record<string, unknown>): Promise<string> {
  const r = await redecider.redecide(record(fields));
  return r.kind === 'decided'
    ? `${r.allowed ? 'allow' : 'deny'} ${r.code}`
    : r.kind === 'cannot-tell'
      ? `cannot tell: ${r.reason}`
      : r.kind;
}

describe('replay re-decides what the record holds and names what it does not', () => {
  test('plain routes are decided', async () => {
    expect(await outcome({ path: '/plain' })).toBe('allow allowed');
    expect(await outcome({ path: '/plain', caller: 'spiffe://shop.example/ns/other/sa/x' })).toBe(
      'deny caller_not_allowed',
    );
    expect(
      await outcome({ path: '/plain', caller: null, result: 'deny', reason_code: 'no_identity' }),
    ).toBe('deny no_identity');
  });

  test('conditions: presence of tracked headers and recorded query keys is decided; anything else cannot be told', async () => {
    expect(await outcome({ path: '/meta' })).toMatch(
      /^cannot tell: rule by-metadata's when: reads metadata/,
    );
    expect(await outcome({ path: '/flag', header_presence: { 'x-flag': true } })).toBe(
      'allow allowed',
    );
    expect(await outcome({ path: '/flag', header_presence: { 'x-flag': false } })).toBe(
      'deny no_matching_rule',
    );
    expect(await outcome({ path: '/flag', header_presence: {} })).toMatch(
      /^cannot tell: .*tests header x-flag, whose presence the record does not hold/,
    );
    expect(await outcome({ path: '/page', query_keys: ['page'] })).toBe('allow allowed');
    expect(await outcome({ path: '/page' })).toBe('deny no_matching_rule');
    expect(await outcome({ path: '/page', query_keys: ['a'], query_keys_truncated: true })).toMatch(
      /^cannot tell: .*query keys/,
    );
  });

  test('residency, body contracts, grants, rate limits, quarantine and JWT audiences are never guessed', async () => {
    expect(await outcome({ path: '/label' })).toMatch(
      /^cannot tell: rule eu-label's residency reads label region/,
    );
    expect(await outcome({ path: '/region', header_presence: { 'x-region': true } })).toMatch(
      /^cannot tell: .*residency reads header x-region/,
    );
    // No region header at all denies for certain.
    expect(await outcome({ path: '/region', header_presence: { 'x-region': false } })).toBe(
      'deny residency_violation',
    );
    expect(await outcome({ method: 'POST', path: '/contract' })).toMatch(
      /^cannot tell: rule contract has a body contract/,
    );
    expect(await outcome({ path: '/grant' })).toMatch(
      /^cannot tell: allow entry 0 of rule dormant expires after disuse/,
    );
    expect(
      await outcome({ path: '/limited', result: 'deny', reason_code: 'rate_limited' }),
    ).toMatch(/^cannot tell: the request was rate limited/);
    expect(await outcome({ path: '/limited' })).toBe('allow allowed');
    expect(await outcome({ path: '/plain', result: 'deny', reason_code: 'rate_limited' })).toBe(
      'allow allowed',
    );
    expect(await outcome({ path: '/plain', result: 'deny', reason_code: 'quarantined' })).toMatch(
      /^cannot tell: the caller was quarantined/,
    );
    expect(await outcome({ path: '/plain', identity_source: 'jwt' })).toMatch(
      /^cannot tell: rule plain admits JWT-SVIDs by audience/,
    );
    expect(await outcome({ path: '/mtls', identity_source: 'jwt' })).toBe('deny mtls_required');
    expect(
      await outcome({
        path: '/plain',
        caller: null,
        identity_source: 'jwt',
        result: 'deny',
        reason_code: 'invalid_identity',
      }),
    ).toMatch(/^cannot tell: a JWT-SVID was refused/);
  });

  test('a WorkloadPolicy refusing body fields applies only to requests with a body', async () => {
    expect(
      await outcome({
        path: '/plain',
        caller: EXPORTER,
        result: 'deny',
        reason_code: 'caller_not_allowed',
      }),
    ).toBe('deny caller_not_allowed');
    expect(await outcome({ path: '/plain', caller: EXPORTER, body_present: true })).toMatch(
      /^cannot tell: WorkloadPolicy exporter refusal no-card-data reads body fields/,
    );
    // A record from before body presence was kept cannot say.
    const legacy = { path: '/plain', caller: EXPORTER, destination: undefined };
    expect(await outcome(legacy)).toMatch(/^cannot tell: WorkloadPolicy exporter/);
  });

  test('malformed requests are denied before any policy is read', async () => {
    expect(await outcome({ result: 'deny', reason_code: 'malformed_request', path: null })).toBe(
      'policy-independent',
    );
  });

  test('the reconstructed CheckRequest carries the destination principal and no header values or credentials', () => {
    const request = checkRequestOf(
      record({
        path: '/x',
        destination: 'spiffe://shop.example/ns/api/sa/api',
        query_keys: ['a b', 'c'],
        header_presence: { 'x-flag': true, 'x-off': false },
      }),
    ) as {
      attributes: {
        destination: { principal: string };
        request: { http: { path: string; headers: Record<string, string> } };
      };
    };
    expect(request.attributes.destination.principal).toBe('spiffe://shop.example/ns/api/sa/api');
    expect(request.attributes.request.http.path).toBe('/x?a%20b=&c=');
    expect({ ...request.attributes.request.http.headers }).toEqual({ 'x-flag': '' });
    const anonymous = checkRequestOf(
      record({ path: '/x', caller: null, header_presence: { authorization: true } }),
    ) as { attributes: { request: { http: { headers: Record<string, string> } } } };
    expect({ ...anonymous.attributes.request.http.headers }).toEqual({});
  });
});
