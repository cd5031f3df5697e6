import { ALLOWED, type Decision } from '../../src/pipeline/decision';

/** An allowed decision for audit tests, with `extra` fields overriding. */
export function sampleDecision(id: string, extra: Partial<Decision> = {}): Decision {
  return {
    ...ALLOWED,
    id,
    host: 'orders',
    method: 'GET',
    path: '/v1/orders',
    requestId: id,
    traceparent: undefined,
    caller: 'spiffe://shop.example/ns/checkout/sa/web',
    identitySource: 'principal',
    policy: undefined,
    policyVersion: 'v1',
    policyCommit: undefined,
    rule: undefined,
    entry: undefined,
    limit: undefined,
    limitBackendError: undefined,
    wouldDeny: undefined,
    optOut: undefined,
    spoofedHeaders: [],
    latencyMs: 0.1,
    destination: undefined,
    query: undefined,
    auditHeaders: [],
    headerPresence: 0,
    bodyPresent: false,
    ...extra,
  };
}
