import type {
  RuleDoc,
  ServicePolicyDoc,
  WorkloadPolicyDoc,
} from '../../src/policy/document/schema';

// The document types are derived from the JSON Schema: these would stop compiling (and so fail
// this suite) if the derivation lost a key, an optional mark or a type.
describe('document types derived from the schema', () => {
  test('a rule, a service policy and a workload policy type as the schema reads them', () => {
    const rule: RuleDoc = {
      name: 'r',
      allow: ['spiffe://td/a', { caller: 'spiffe://td/b', expiresAfterUnused: '30d' }],
      body: { maxBytes: 10, schema: { type: 'object' } },
      rateLimit: { capacity: 1, refillPerSecond: 1, onBackendError: 'deny' },
      require: 'mtls',
    };
    // @ts-expect-error a rate limit needs its capacity
    const noCapacity: RuleDoc = { name: 'r', rateLimit: { refillPerSecond: 1 } };
    // @ts-expect-error require has one value
    const badRequire: RuleDoc = { name: 'r', require: 'jwt' };
    // @ts-expect-error an unknown key is no part of a rule
    const unknownKey: RuleDoc = { name: 'r', colour: 'blue' };
    const service: ServicePolicyDoc = {
      apiVersion: 'gatehouse/v1',
      kind: 'ServicePolicy',
      metadata: { name: 'p', labels: { team: 'a' } },
      spec: { hosts: ['p'], mode: 'dry-run', rules: [rule] },
    };
    const workload: WorkloadPolicyDoc = {
      apiVersion: 'gatehouse/v1',
      kind: 'WorkloadPolicy',
      metadata: { name: 'w' },
      spec: { workload: 'spiffe://td/w', refuse: [{ name: 'x', headers: ['cookie'] }] },
    };
    expect([service.spec.rules[0], workload.spec.refuse[0]!.name]).toEqual([rule, 'x']);
    expect([noCapacity, badRequire, unknownKey].map((r) => r.name)).toEqual(['r', 'r', 'r']);
  });
});
