// Replay memory and throughput over a large audit log: the log is N copies of the sample
// audit (examples/ci/sample-audit.log, written by the real audit writer) with fresh decision
// ids, replayed by the CLI's replay() against an edited policy set. The heap after a forced
// GC must stay flat from the first second to the last, at 1M as at 3M records: memory follows
// change groups, not records. (Peak RSS grows with V8's lazy heap sizing, not with the log.)
// Run: node --expose-gc bench/replay.js [records…, default 1000000 3000000]
const path = require('path');
const fs = require('fs');
const os = require('os');
const ROOT = path.resolve(__dirname, '..');
const sample = fs
  .readFileSync(path.join(ROOT, 'examples/ci/sample-audit.log'), 'utf8')
  .trim()
  .split('\n');

async function writeLog(file, records) {
  const out = fs.createWriteStream(file);
  for (let n = 0, copy = 0; n < records; copy++) {
    let chunk = '';
    for (let i = 0; i < sample.length && n < records; i++, n++)
      chunk += sample[i].replace(/"decision_id":"[^"]+"/, `"decision_id":"b-${copy}-${i}"`) + '\n';
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r) => out.end(r));
}

/** The CLI's replay in this process, so the heap can be read after a forced GC once a second. */
async function replayInProcess(policies, log) {
  const { loadPolicyDir } = require(path.join(ROOT, 'dist/policy/load'));
  const { replay } = require(path.join(ROOT, 'dist/replay/replay'));
  const set = (await loadPolicyDir(policies)).set;
  const heaps = [];
  const report = await replay(set, {
    files: [log],
    onProgress: () => {
      global.gc();
      heaps.push(process.memoryUsage().heapUsed);
    },
  });
  return { report, heaps };
}

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-replay-bench-'));
  const policies = path.join(dir, 'policies');
  fs.cpSync(path.join(ROOT, 'policies'), policies, { recursive: true });
  const orders = path.join(policies, 'orders.yaml');
  fs.writeFileSync(
    orders,
    fs
      .readFileSync(orders, 'utf8')
      .replace(
        '- spiffe://shop.example/ns/checkout/**',
        '- spiffe://shop.example/ns/checkout/sa/web',
      ),
  );
  const sizes =
    process.argv.length > 2 ? process.argv.slice(2).map(Number) : [1_000_000, 3_000_000];
  try {
    for (const records of sizes) {
      const log = path.join(dir, 'audit.log');
      await writeLog(log, records);
      const { report, heaps } = await replayInProcess(policies, log);
      const mib = (b) => (b / 1048576).toFixed(1);
      console.log(
        `${records} records (${(fs.statSync(log).size / 1048576).toFixed(0)} MiB): ${report.recordsPerSecond} records/s, heap after GC ${mib(Math.min(...heaps))}–${mib(Math.max(...heaps))} MiB over ${heaps.length} samples, peak RSS ${mib(process.resourceUsage().maxRSS * 1024)} MiB, ${report.changes.length} change groups, ${report.allowToDeny} allow→deny`,
      );
      fs.rmSync(log);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
