import { loadPolicyDir } from '../../src/policy/load';
import {
  policyForDestination,
  selectHttpPolicy,
  SelectionRefusal,
} from '../../src/policy/features/select';
import { authorityPortError } from '../../src/request/authority';
import { normalizeCheckRequest } from '../../src/request/normalize';
import { envoyCheckRequest } from '../helpers/requests';
import { isHostOnlyWarning, policyDir } from '../helpers/policies';
import { buildPolicySet, type PolicyDocument } from '../helpers/policy-builder';

const TD = 'spiffe://shop.example';

function policy(name: string, spec: string): string {
  return `apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: { name: ${name} }\nspec:\n${spec}\n  rules:\n    - { name: r, allow: ["${TD}/**"] }\n`;
}

const ANY_CALLER = { name: 'r', allow: [`${TD}/**`] };

/** A policy admitting the whole trust domain, selected as `spec` says. */
function bound(name: string, spec: Record<string, unknown>): PolicyDocument {
  return { kind: 'ServicePolicy', metadata: { name }, spec: { ...spec, rules: [ANY_CALLER] } };
}

describe('destination index', () => {
  test('exact IDs beat patterns, and a longer pattern beats a shorter one whatever the file order', async () => {
    const docs = [
      bound('ns-wide', { workloads: [`${TD}/ns/pay/**`] }),
      bound('accounts', { workloads: [`${TD}/ns/pay/sa/*`] }),
      bound('exact', { workloads: [`${TD}/ns/pay/sa/ledger`] }),
    ];
    const reversed = buildPolicySet(...[...docs].reverse());
    const set = buildPolicySet(...docs);
    for (const id of [`${TD}/ns/pay/sa/ledger`, `${TD}/ns/pay/sa/api`, `${TD}/ns/pay/jobs/x/y`])
      expect(policyForDestination(reversed.destinations, id)?.name).toBe(
        policyForDestination(set.destinations, id)?.name,
      );
    expect(policyForDestination(set.destinations, `${TD}/ns/pay/sa/ledger`)?.name).toBe('exact');
    expect(policyForDestination(set.destinations, `${TD}/ns/pay/sa/api`)?.name).toBe('accounts');
    expect(policyForDestination(set.destinations, `${TD}/ns/pay/jobs/x/y`)?.name).toBe('ns-wide');
    expect(policyForDestination(set.destinations, `${TD}/ns/payments/sa/api`)).toBeUndefined();
    expect(policyForDestination(set.destinations, 'not a spiffe id')).toBeUndefined();
    expect(set.destinations.exact.size).toBe(1);
    expect(set.destinations.patterns).toHaveLength(2);
  });

  test("a Host narrows a bound policy; another policy's Host is refused; Host alone selects only unbound policies", async () => {
    const set = buildPolicySet(
      bound('pay', { workloads: [`${TD}/ns/pay/sa/api`], hosts: ['pay'] }),
      bound('edge', { hosts: ['edge'] }),
    );
    const select = (host: string, destination: string, context?: Record<string, string>) => {
      const normalized = normalizeCheckRequest(
        envoyCheckRequest({ host, destination, path: '/x' }),
      );
      if (!normalized.ok) throw new Error(normalized.reason);
      const request = context
        ? { ...normalized.request, contextExtensions: context }
        : normalized.request;
      const selected = selectHttpPolicy(set, request);
      return selected instanceof SelectionRefusal
        ? `${selected.code}:${selected.policy?.name ?? '-'}`
        : selected?.name;
    };
    expect(select('pay', `${TD}/ns/pay/sa/api`)).toBe('pay');
    expect(select('edge', `${TD}/ns/pay/sa/api`)).toBe('host_mismatch:pay');
    expect(select('elsewhere', `${TD}/ns/pay/sa/api`)).toBe('host_mismatch:pay');
    expect(select('edge', '')).toBe('edge');
    expect(select('pay', '')).toBe('host_mismatch:-');
    expect(select('nobody', '')).toBeUndefined();
    // A destination no policy binds falls back to the unbound policies' Hosts.
    expect(select('edge', `${TD}/ns/other/sa/x`)).toBe('edge');
    expect(select('pay', '', { gatehouse_policy: 'pay' })).toBe('pay');
    expect(select('pay', `${TD}/ns/other/sa/x`, { gatehouse_policy: 'pay' })).toBe(
      'route_mismatch:-',
    );
  });
});

describe('validation', () => {
  test('workloads take SPIFFE ID patterns; a bad one is an error', async () => {
    const result = await loadPolicyDir(
      policyDir({ 'p.yaml': policy('p', `  workloads: ["${TD}/ns/*/sa/x"]`) }),
    );
    expect(!result.ok && result.problems.map((p) => p.message)).toEqual([
      expect.stringMatching(/^workloads\[0\]: .*a wildcard may only end a pattern/),
    ]);
  });

  test('a policy selected by Host alone gets a warning (exit 0); a bound one does not', async () => {
    const result = await loadPolicyDir(
      policyDir({
        'edge.yaml': policy('edge', '  hosts: [edge]'),
        'pay.yaml': policy('pay', `  workloads: ["${TD}/ns/pay/sa/api"]\n  hosts: [pay]`),
      }),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.warnings.filter(isHostOnlyWarning).map((w) => w.file.split('/').pop())).toEqual([
      'edge.yaml',
    ]);
    expect(result.warnings[0]!.message).toContain('trusts the route configuration');
  });
});

describe('authority ports', () => {
  test.each(['payments', 'payments:8080', 'payments:65535', '[::1]', '[::1]:443', '10.0.0.1:1'])(
    '%s is accepted',
    (host) => expect(authorityPortError(host)).toBeUndefined(),
  );
  test.each([
    'payments:abc',
    'payments:',
    'payments:0',
    'payments:65536',
    'payments:123456',
    'a:b:c',
    '::1',
    '[::1',
    '[::1]:',
    '[::1]x',
    'payments:+80',
    'payments: 80',
  ])('%s is refused', (host) => expect(authorityPortError(host)).toEqual(expect.any(String)));
});
