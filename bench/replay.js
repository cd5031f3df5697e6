// Replay memory and throughput over a large audit log: the log is N copies of the sample
// audit (examples/ci/sample-audit.log, written by the real audit writer) with fresh decision
// ids, replayed by the real CLI against an edited policy set. Peak RSS (VmHWM) should be the
// same at 1M and 3M records: memory follows change groups, not records.
// Run: node bench/replay.js [records, default 1000000 and 3000000]
const path = require('path'); const fs = require('fs'); const os = require('os');
const { spawn } = require('child_process');
const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/cli/main.js');
const sample = fs.readFileSync(path.join(ROOT, 'examples/ci/sample-audit.log'), 'utf8').trim().split('\n');

async function writeLog(file, records) {
  const out = fs.createWriteStream(file);
  for (let n = 0, copy = 0; n < records; copy++) {
    let chunk = '';
    for (let i = 0; i < sample.length && n < records; i++, n++) chunk += sample[i].replace(/"decision_id":"[^"]+"/, `"decision_id":"b-${copy}-${i}"`) + '\n';
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r) => out.end(r));
}

function replay(policies, log) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'replay', policies, '--audit', log, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = ''; let peak = 0;
    child.stdout.on('data', (b) => (out += b));
    const timer = setInterval(() => {
      try { const m = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8')); if (m) peak = Math.max(peak, Number(m[1])); } catch { /* exited */ }
    }, 100);
    child.on('close', () => { clearInterval(timer); resolve({ report: JSON.parse(out), peakKiB: peak }); });
  });
}

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-replay-bench-'));
  const policies = path.join(dir, 'policies');
  fs.cpSync(path.join(ROOT, 'policies'), policies, { recursive: true });
  const orders = path.join(policies, 'orders.yaml');
  fs.writeFileSync(orders, fs.readFileSync(orders, 'utf8').replace('- spiffe://shop.example/ns/checkout/**', '- spiffe://shop.example/ns/checkout/sa/web'));
  const sizes = process.argv.length > 2 ? process.argv.slice(2).map(Number) : [1_000_000, 3_000_000];
  try {
    for (const records of sizes) {
      const log = path.join(dir, 'audit.log');
      await writeLog(log, records);
      const { report, peakKiB } = await replay(policies, log);
      console.log(`${records} records (${(fs.statSync(log).size / 1048576).toFixed(0)} MiB): ${report.recordsPerSecond} records/s, peak RSS ${(peakKiB / 1024).toFixed(0)} MiB, ${report.changes.length} change groups, ${report.allowToDeny} allow→deny`);
      fs.rmSync(log);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
