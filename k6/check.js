// k6 load test for Gatehouse's gRPC Check service (envoy.service.auth.v3.Authorization/Check).
//
//   make run                 # in one shell: serves ./policies on :9191, trust domain shop.example
//   k6 run k6/check.js       # in another
//
// Env: GATEHOUSE_ADDR (default 127.0.0.1:9191), RATE (checks per second, default 200),
//      DURATION (default 30s), MAX_VUS (default 50).
//
// The mix sent, against the example policies in ../policies:
//   ~80% allowed     frontend/sa/web      GET  orders   /v1/orders/{n}  -> status.code 0 (OK)
//   ~10% refused     checkout/sa/batch    POST orders   /v1/orders      -> 7 (PERMISSION_DENIED, 403)
//   ~10% over budget orders/sa/orders     POST payments /v1/charges     -> 8 (RESOURCE_EXHAUSTED, 429)
// payments/charge allows 5 at once and refills 1/s per caller, so at the default rate most
// of that share is limited; the few the refill admits come back 0 and count as expected.
// A deny is still an OK RPC: the gRPC status must be OK for every kind of request.
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const ADDR = __ENV.GATEHOUSE_ADDR || '127.0.0.1:9191';
const RATE = parseInt(__ENV.RATE || '200', 10);
const DURATION = __ENV.DURATION || '30s';
const MAX_VUS = parseInt(__ENV.MAX_VUS || '50', 10);

const CHECK_METHOD = '/envoy.service.auth.v3.Authorization/Check';

const client = new grpc.Client();
// Paths are resolved relative to this script: ../protos is the project's protos/ folder.
client.load(['../protos'], 'envoy/service/auth/v3/external_auth.proto');

const decisions = new Counter('gatehouse_decisions');
const limited = new Rate('gatehouse_over_budget_limited');

export const options = {
  scenarios: {
    checks: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.min(10, MAX_VUS),
      maxVUs: MAX_VUS,
      gracefulStop: '5s',
    },
  },
  thresholds: {
    grpc_req_duration: ['p(99)<25'],
    checks: ['rate>0.99'],
  },
};

// kind -> weight, expected CheckResponse.status.code values, request builder.
const MIX = [
  {
    kind: 'allowed',
    weight: 80,
    expect: [0],
    build: () =>
      request(
        'spiffe://shop.example/ns/frontend/sa/web',
        'GET',
        'orders.shop.svc.cluster.local',
        `/v1/orders/${1 + Math.floor(Math.random() * 100000)}`,
      ),
  },
  {
    kind: 'refused',
    weight: 10,
    expect: [7],
    build: () =>
      request(
        'spiffe://shop.example/ns/checkout/sa/batch',
        'POST',
        'orders.shop.svc.cluster.local',
        '/v1/orders',
      ),
  },
  {
    kind: 'over_budget',
    weight: 10,
    // 8 once the bucket (capacity 5, refill 1/s) is empty; 0 for the few the refill admits.
    expect: [8, 0],
    build: () =>
      request(
        'spiffe://shop.example/ns/orders/sa/orders',
        'POST',
        'payments.shop.svc.cluster.local',
        '/v1/charges',
      ),
  },
];
const TOTAL_WEIGHT = MIX.reduce((sum, m) => sum + m.weight, 0);

function pick() {
  let r = Math.random() * TOTAL_WEIGHT;
  for (const m of MIX) {
    if (r < m.weight) return m;
    r -= m.weight;
  }
  return MIX[0];
}

let requestSeq = 0;

// The example policies' workloads, by the first label of the host they serve.
const WORKLOADS = {
  orders: 'spiffe://shop.example/ns/orders/sa/orders',
  payments: 'spiffe://shop.example/ns/payments/sa/payments',
};

// A CheckRequest shaped like the one Envoy sends (proto3 JSON mapping).
function request(principal, method, host, path) {
  requestSeq += 1;
  const requestId = `k6-${__VU}-${requestSeq}`;
  return {
    attributes: {
      source: {
        address: { socketAddress: { address: '10.0.3.7', portValue: 40000 + (__VU % 20000) } },
        principal,
      },
      destination: {
        address: { socketAddress: { address: '10.0.1.4', portValue: 8080 } },
        // The receiving workload's identity selects its policy (`workloads:`); the Host only narrows it.
        principal: WORKLOADS[host.split('.')[0]],
      },
      request: {
        http: {
          id: String(requestSeq),
          method,
          path,
          host,
          scheme: 'https',
          protocol: 'HTTP/2',
          headers: {
            ':authority': host,
            ':method': method,
            ':path': path,
            ':scheme': 'https',
            'x-request-id': requestId,
            traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
          },
        },
      },
    },
  };
}

function statusCode(res) {
  // Zero values may be left out of the decoded message: a missing code is 0 (OK).
  if (!res || !res.message || !res.message.status) return 0;
  return Number(res.message.status.code || 0);
}

let connected = false;

export default function () {
  if (!connected) {
    client.connect(ADDR, { plaintext: true, timeout: '5s' });
    connected = true;
  }
  const m = pick();
  const res = client.invoke(CHECK_METHOD, m.build(), { timeout: '2s' });
  const code = statusCode(res);
  check(res, {
    'rpc status is OK': (r) => r && r.status === grpc.StatusOK,
    [`${m.kind}: status.code in [${m.expect.join(',')}]`]: () => m.expect.indexOf(code) !== -1,
  });
  decisions.add(1, { kind: m.kind, code: String(code) });
  if (m.kind === 'over_budget') limited.add(code === 8);
}
