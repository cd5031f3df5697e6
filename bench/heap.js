// Heap after a forced GC at 300k and at 1M checks from 100k callers (each with its own bucket):
// RSS follows the GC's timing, this does not, so a leak shows as growth between the two lines.
// Run: node --expose-gc bench/heap.js
const path = require('path');
const ROOT = path.resolve(__dirname, '..');
const pino = require('pino');
const { Gatehouse } = require(path.join(ROOT, 'dist/app'));
const { decodeCheckRequest } = require(path.join(ROOT, 'dist/envoy/codec'));
const { loadProtos } = require(path.join(ROOT, 'dist/server/protos'));
(async () => {
  const app = await Gatehouse.start(
    {
      policiesDir: path.join(ROOT, 'policies'),
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      trustDomains: ['shop.example'],
      trustXfcc: false,
      auditLog: '/dev/null',
      drainTimeoutMs: 1000,
    },
    pino({ level: 'silent' }),
  );
  const principal = 'spiffe://shop.example/ns/checkout/sa/w00000';
  const pb = loadProtos().authorization.Check.requestSerialize({
    attributes: {
      source: { principal },
      destination: { principal: 'spiffe://shop.example/ns/orders/sa/orders' },
      request: {
        http: {
          method: 'POST',
          path: '/v1/orders',
          host: 'orders.shop.svc.cluster.local',
          headers: {
            ':authority': 'orders.shop.svc.cluster.local',
            ':method': 'POST',
            ':path': '/v1/orders',
          },
        },
      },
    },
  });
  const at = pb.indexOf(Buffer.from(principal)) + principal.length - 5;
  let done = 0;
  const report = () => {
    global.gc();
    global.gc();
    console.log(done, 'heapUsed MiB', (process.memoryUsage().heapUsed / 1048576).toFixed(1));
  };
  for (const target of [300000, 1000000]) {
    while (done < target) {
      const batch = [];
      for (let i = 0; i < 64; i++) {
        const b = Buffer.from(pb);
        b.write(String((done + i) % 100000).padStart(5, '0'), at, 'latin1');
        batch.push(app.engine.decide(decodeCheckRequest(b)));
      }
      await Promise.all(batch);
      done += 64;
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 200));
    report();
  }
  await app.stop();
  process.exit(0);
})();
