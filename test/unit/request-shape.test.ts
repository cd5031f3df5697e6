import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { headerPresence, MAX_TRACKED_HEADERS } from '../../src/audit/request-shape';
import { conditionReads } from '../../src/policy/features/condition-reads';
import { parseSince } from '../../src/cli/replay';
import { loadPolicyDir } from '../../src/policy/load';
import { normalizeCheckRequest } from '../../src/request/normalize';
import type { CheckInput } from '../../src/envoy/check-input';

describe('condition reads', () => {
  test('literal header keys are told apart by presence test and value read; macros make the map opaque', () => {
    const reads = conditionReads(
      '"x-debug" in request.headers && request.headers[?"x-tenant"].orValue("") == caller.segments[3] && request.method == "GET"',
    )!;
    expect(reads.presence.headers).toEqual(['x-debug']);
    expect(reads.values.headers).toEqual(['x-tenant']);
    expect(reads.opaque.headers).toBe(false);
    expect([...reads.paths].sort()).toEqual(['caller', 'request.headers', 'request.method']);
    expect(conditionReads('request.headers.exists(k, k.startsWith("x-"))')!.opaque.headers).toBe(
      true,
    );
    expect(conditionReads('"page" in request.query')!.presence.query).toEqual(['page']);
    expect(
      [...conditionReads('metadata["jwt"].sub == "a" || context["tier"] == "b"')!.paths].sort(),
    ).toEqual(['context', 'metadata']);
  });

  test('a key both tested and read counts as read', () => {
    const reads = conditionReads('"x-a" in request.headers && request.headers["x-a"] == "1"')!;
    expect(reads.presence.headers).toEqual([]);
    expect(reads.values.headers).toEqual(['x-a']);
  });
});

describe('header names a policy set reads', () => {
  test('are found once at load in conditions, rate-limit keys, residency sources and WorkloadPolicy refusals', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-shape-'));
    writeFileSync(
      path.join(dir, 'p.yaml'),
      `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: { name: p }
spec:
  hosts: [p]
  rules:
    - name: a
      allow: [spiffe://shop.example/ns/a/sa/a]
      when: '"x-debug" in request.headers || request.headers[?"X-Upper"].orValue("") == "1"'
      rateLimit: { capacity: 5, refillPerSecond: 1, per: "header:x-api-key" }
    - name: b
      allow: [spiffe://shop.example/ns/a/sa/a]
      residency: { regions: [eu], regionFrom: "header:x-region" }
---
apiVersion: gatehouse/v1
kind: WorkloadPolicy
metadata: { name: w }
spec:
  workload: spiffe://shop.example/ns/a/sa/a
  refuse:
    - name: no-cookies
      headers: [cookie]
`,
    );
    const loaded = await loadPolicyDir(dir);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    // X-Upper can never be sent (Envoy lower-cases keys), so it has no presence worth keeping.
    expect(loaded.set.auditHeaders).toEqual(['cookie', 'x-api-key', 'x-debug', 'x-region']);
    expect(headerPresence(loaded.set.auditHeaders, { cookie: 'session=1', 'x-region': 'eu' })).toBe(
      0b1001,
    );
  });

  test('the tracked set is bounded', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-shape-'));
    const when = Array.from(
      { length: 40 },
      (_, i) => `"x-h${String(i).padStart(2, '0')}" in request.headers`,
    ).join(' || ');
    writeFileSync(
      path.join(dir, 'p.yaml'),
      `apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: { name: p }\nspec:\n  hosts: [p]\n  rules:\n    - name: a\n      allow: [spiffe://shop.example/ns/a/sa/a]\n      when: '${when}'\n`,
    );
    const loaded = await loadPolicyDir(dir);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    expect(loaded.set.auditHeaders).toHaveLength(MAX_TRACKED_HEADERS);
  });
});

describe('destination principal', () => {
  // The principal's type is the attack: a producer may hand over any value.
  const request = (principal: unknown): CheckInput =>
    ({
      attributes: {
        destination: { principal },
        request: { http: { host: 'orders', method: 'GET', path: '/v1/orders', headers: {} } },
      },
    }) as CheckInput;

  test('is carried from attributes.destination.principal, empty when absent or not a string', () => {
    const spiffe = 'spiffe://shop.example/ns/orders/sa/orders';
    const normalized = normalizeCheckRequest(request(spiffe));
    expect(normalized.ok && normalized.request.destinationPrincipal).toBe(spiffe);
    const odd = normalizeCheckRequest(request({ nested: true }));
    expect(odd.ok && odd.request.destinationPrincipal).toBe('');
  });

  test('one too long to be a workload ID is malformed, never read as absent', () => {
    expect(
      normalizeCheckRequest(request(`spiffe://shop.example/${'a'.repeat(3000)}`)),
    ).toMatchObject({ ok: false, reason: 'destination principal is too long' });
  });
});

describe('replay --since', () => {
  test('takes an ISO time or a duration back from now, and refuses anything else', () => {
    expect(parseSince('2026-12-05T00:00:00Z')).toBe(Date.UTC(2026, 11, 5));
    expect(parseSince('24h', 1_000_000_000)).toBe(1_000_000_000 - 86_400_000);
    expect(() => parseSince('yesterday')).toThrow(/ISO time/);
    expect(() => parseSince('12345')).toThrow(/ISO time/);
  });
});
