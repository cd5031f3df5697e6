// In-process cost of one check on the gRPC hot path without the network: decode the
// CheckRequest bytes, decide, build and encode the CheckResponse, in a tight loop. Give it
// several built dist/ directories to compare them on the same machine, runs interleaved so
// drift in the machine's load falls on each alike.
// Run: make build && node bench/decide-loop.js [distDir ...] [--checks N] [--rounds R]
const path = require('path');
const protobuf = require('protobufjs');
const ROOT = path.resolve(__dirname, '..');

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  if (i === -1) return fallback;
  const value = Number(args.splice(i, 2)[1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} needs a positive integer`);
  return value;
};
const CHECKS = Math.min(option('--checks', 100_000), 1_000_000);
const ROUNDS = Math.min(option('--rounds', 5), 50);
const dists = (args.length > 0 ? args : [path.join(ROOT, 'dist')]).map((d) => path.resolve(d));

/** The codec moved from server/ to envoy/; either layout loads. */
function requireCodec(dist) {
  for (const where of ['envoy/codec', 'server/codec']) {
    try {
      return require(path.join(dist, where));
    } catch (err) {
      if (err.code !== 'MODULE_NOT_FOUND') throw err;
    }
  }
  throw new Error(`no codec under ${dist}`);
}

function requestBytes(principal, method, p, host) {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) =>
    path.isAbsolute(target) ? target : path.join(ROOT, 'protos', target);
  root.loadSync('envoy/service/auth/v3/external_auth.proto', { keepCase: false });
  const type = root.lookupType('envoy.service.auth.v3.CheckRequest');
  const headers = { ':authority': host, ':method': method, ':path': p, 'x-request-id': 'r-1' };
  return type
    .encode(
      type.fromObject({
        attributes: {
          source: { principal },
          destination: { principal: 'spiffe://shop.example/ns/orders/sa/orders' },
          request: { http: { method, path: p, host, headers } },
        },
      }),
    )
    .finish();
}

const CASES = [
  // Every stage: allowed, then the rate limit stage answers 429 once the bucket is empty.
  [
    'allow/rate limit',
    requestBytes('spiffe://shop.example/ns/checkout/sa/web', 'POST', '/v1/orders', 'orders'),
  ],
  [
    'deny caller_refused',
    requestBytes('spiffe://shop.example/ns/checkout/sa/batch', 'POST', '/v1/orders', 'orders'),
  ],
];

async function setUp(dist) {
  const { DecisionEngine } = require(path.join(dist, 'pipeline/engine'));
  const { loadPolicyDir } = require(path.join(dist, 'policy/load'));
  const { MemoryBucketStore } = require(path.join(dist, 'ratelimit/memory-store'));
  const { toCheckResponse } = require(path.join(dist, 'respond/check-response'));
  const { decodeCheckRequest, encodeCheckResponse } = requireCodec(dist);
  const loaded = await loadPolicyDir(path.join(ROOT, 'policies'));
  if (!loaded.ok) throw new Error('policies invalid');
  const engine = new DecisionEngine({
    policies: () => loaded.set,
    identity: { trustDomains: new Set(['shop.example']), trustXfcc: false },
    store: new MemoryBucketStore(),
    sink: { record() {} },
    quarantine: { current: () => undefined, recordDenial: async () => undefined },
  });
  return async (bytes, n) => {
    let size = 0;
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const decision = await engine.decide(decodeCheckRequest(bytes));
      size += encodeCheckResponse(toCheckResponse(decision)).length;
    }
    if (size === 0) throw new Error('nothing encoded');
    return ((performance.now() - start) * 1000) / n;
  };
}

(async () => {
  const runners = [];
  for (const dist of dists) runners.push(await setUp(dist));
  const samples = dists.map(() => CASES.map(() => []));
  for (let round = 0; round < ROUNDS; round++) {
    for (let d = 0; d < dists.length; d++) {
      for (let c = 0; c < CASES.length; c++) {
        await runners[d](CASES[c][1], Math.min(CHECKS, 2000)); // warm-up
        samples[d][c].push(await runners[d](CASES[c][1], CHECKS));
      }
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (let d = 0; d < dists.length; d++) {
    for (let c = 0; c < CASES.length; c++) {
      const xs = samples[d][c];
      console.log(
        `${dists[d]}  ${CASES[c][0].padEnd(20)} median ${median(xs).toFixed(3)} µs/check  (runs: ${xs.map((x) => x.toFixed(3)).join(' ')})`,
      );
    }
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
