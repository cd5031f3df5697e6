// Heap after a forced GC at 300k and at 1M checks from 100k callers (each with its own bucket):
// RSS follows the GC's timing, this does not, so a leak shows as growth between the two lines.
// Run: node --expose-gc bench/heap.js
const path = require('path');
const { ROOT, callerTemplate, loadProtos, startInProcess } = require('./lib');
const { decodeCheckRequest } = require(path.join(ROOT, 'dist/envoy/codec'));
(async () => {
  const app = await startInProcess();
  const { pb, digitsAt: at } = callerTemplate(loadProtos().authorization.Check);
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
