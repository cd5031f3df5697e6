// Event-loop time of one check whose body a WorkloadPolicy `fields` opt-out reads (the example
// reports-exporter), for a 1 MiB body of nested arrays, a 1 MiB flat JSON body and a 1 KiB
// one; and a plain check with no body rule, for the hot path. Each check runs synchronously
// but for its awaits, so wall time per check here is the event-loop time it takes.
// Run: make build && node bench/body-cost.js
const path = require('path');
const ROOT = path.resolve(__dirname, '..');
const { DecisionEngine } = require(path.join(ROOT, 'dist/pipeline/engine'));
const { loadPolicyDir } = require(path.join(ROOT, 'dist/policy/load'));
const { MemoryBucketStore } = require(path.join(ROOT, 'dist/ratelimit/memory-store'));
// Through the wire decoder, as the gRPC server hands requests to the engine.
const { checkRequestFromJson } = require(path.join(ROOT, 'dist/envoy/proto-json'));
(async () => {
  const loaded = await loadPolicyDir(path.join(ROOT, 'policies'));
  if (!loaded.ok) throw new Error('policies invalid');
  const engine = new DecisionEngine({
    policies: () => loaded.set,
    identity: { trustDomains: new Set(['shop.example']), trustXfcc: false },
    store: new MemoryBucketStore(),
    sink: { record() {} },
    // Never isolate: repeated denials of one caller must not turn later cases into quarantine denials.
    quarantine: { current: () => undefined, recordDenial: async () => undefined },
  });
  const check = (principal, method, p, body) => ({
    attributes: {
      source: { principal },
      // The sidecar's own workload selects the policy; a bare Host would be refused.
      destination: { principal: 'spiffe://shop.example/ns/customers/sa/customers' },
      request: {
        http: {
          method,
          path: p,
          host: 'customers',
          headers: {
            ':authority': 'customers',
            ':method': method,
            ':path': p,
            'content-type': 'application/json',
          },
          ...(body === undefined ? {} : { body }),
        },
      },
    },
  });
  const exporter = 'spiffe://shop.example/ns/reports/sa/exporter';
  const half = 512 * 1024;
  const flatJson = (bytes) => {
    const rows = [];
    for (let size = 10; size < bytes; rows.push({ id: rows.length, name: 'n' + rows.length }))
      size += JSON.stringify({ id: rows.length, name: 'n' + rows.length }).length + 1;
    return JSON.stringify({ rows });
  };
  const cases = [
    [
      '1 MiB nested arrays, fields opt-out',
      check(exporter, 'POST', '/v1/customers/export', '['.repeat(half) + ']'.repeat(half)),
      20,
    ],
    [
      '1 MiB flat JSON, fields opt-out',
      check(exporter, 'POST', '/v1/customers/export', flatJson((1 << 20) - 40)),
      20,
    ],
    [
      '1 KiB JSON, fields opt-out',
      check(
        exporter,
        'POST',
        '/v1/customers/export',
        JSON.stringify({ rows: Array.from({ length: 30 }, (_, i) => ({ id: i, name: 'n' + i })) }),
      ),
      5000,
    ],
    [
      'plain GET, no body rule',
      check('spiffe://shop.example/ns/frontend/sa/web', 'GET', '/v1/customers/c-1', undefined),
      50000,
    ],
    [
      'plain POST, no body rule (orders)',
      {
        attributes: {
          source: { principal: 'spiffe://shop.example/ns/checkout/sa/web' },
          destination: { principal: 'spiffe://shop.example/ns/orders/sa/orders' },
          request: {
            http: {
              method: 'POST',
              path: '/v1/orders',
              host: 'orders',
              headers: {
                ':authority': 'orders',
                ':method': 'POST',
                ':path': '/v1/orders',
                'content-type': 'application/json',
              },
            },
          },
        },
      },
      50000,
    ],
  ];
  for (const [name, json, n] of cases) {
    const request = checkRequestFromJson(json);
    let decision;
    for (let i = 0; i < Math.min(n, 50); i++) decision = await engine.decide(request); // warm-up
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) decision = await engine.decide(request);
    const perCheckUs = Number(process.hrtime.bigint() - start) / 1000 / n;
    console.log(
      `${name}: ${perCheckUs >= 1000 ? (perCheckUs / 1000).toFixed(1) + ' ms' : perCheckUs.toFixed(1) + ' µs'} per check (${n} checks) → ${decision.allowed ? 'allow' : 'deny ' + decision.code}: ${decision.reason.slice(0, 90)}`,
    );
  }
})();
