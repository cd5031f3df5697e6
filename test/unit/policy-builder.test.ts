import { loadPolicyDir } from '../../src/policy/load';
import { isHostOnlyWarning, policyDir } from '../helpers/policies';
import {
  buildPolicySet,
  compileDocuments,
  servicePolicyDoc,
  type PolicyDocument,
} from '../helpers/policy-builder';

const ORDERS = servicePolicyDoc(
  'orders',
  ['orders'],
  [
    {
      name: 'read',
      methods: ['GET'],
      paths: ['/v1/orders/*'],
      allow: ['spiffe://shop.example/ns/checkout/**'],
      rateLimit: { capacity: 5, refillPerSecond: 1 },
    },
  ],
);

describe('policy builder (test helper)', () => {
  test('builds the set a directory holding the same document loads to', async () => {
    const built = buildPolicySet(ORDERS);
    // The builder fills in apiVersion; the file states it.
    const withVersion = await loadPolicyDir(
      policyDir({ 'orders.yaml': JSON.stringify({ apiVersion: 'gatehouse/v1', ...ORDERS }) }),
    );
    expect(withVersion.ok).toBe(true);
    if (!withVersion.ok) return;
    expect(built.version).toBe(withVersion.set.version);
    expect(built.policies.map((p) => p.name)).toEqual(['orders']);
  });

  test('an invalid document is refused with its problems located', () => {
    const bad: PolicyDocument = servicePolicyDoc('bad', ['bad'], [{ name: 'r', allow: [] }]);
    const result = compileDocuments([bad]);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.length).toBeGreaterThan(0);
    expect(result.problems[0]).toMatchObject({ severity: 'error', file: 'memory/0-bad.yaml' });
    expect(result.problems[0]!.line).toBeGreaterThan(0);
    expect(() => buildPolicySet(bad)).toThrow(/memory\/0-bad\.yaml:\d+:\d+/);
  });

  test('warnings do not stop the build', () => {
    const result = compileDocuments([ORDERS]);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    // Selected by Host alone: warned about, still built.
    expect(result.warnings.filter(isHostOnlyWarning)).toHaveLength(1);
  });
});
