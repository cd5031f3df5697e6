#!/usr/bin/env node
// RSS over a million checks from a hundred thousand distinct callers (each its own token
// bucket): memory must level off, not grow with the number of callers seen. Two runs:
//  - in-process: the real Gatehouse (decoder, engine, audit, metrics, in-process buckets) in
//    this process, fed the wire bytes directly: a million checks in well under a minute;
//  - over gRPC: a separate `gatehouse serve` driven by a node:http2 client, a smaller run
//    (the client, not the server, is the bottleneck on two cores), for the transport's share.
// Usage: node bench/memory.js [checks] [callers]   (run by make bench; also on its own)
'use strict';
const http2 = require('node:http2');
const path = require('node:path');
const {
  ROOT,
  CHECK_PATH,
  callerTemplate,
  grpcFrame,
  loadProtos,
  rssMiB,
  startInProcess,
  startServe,
  stop,
} = require('./lib');

const CHECKS = Number(process.argv[2] ?? 1_000_000);
const CALLERS = Number(process.argv[3] ?? 100_000);
const CONCURRENCY = 64;
const TIME_LIMIT_MS = 300_000;

const checkDef = loadProtos().authorization.Check;

/** A gRPC-framed CheckRequest whose caller ends in five digits we overwrite per request. */
function template() {
  const { pb, digitsAt } = callerTemplate(checkDef);
  return { frame: grpcFrame(pb), digitsAt: digitsAt + 5 };
}

async function overGrpc(checks, callers) {
  const { child, port } = await startServe({ logLevel: 'info' });
  const stopNow = () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  };
  process.on('exit', stopNow);

  const { frame, digitsAt } = template();
  const client = http2.connect(`http://127.0.0.1:${port}`);
  const started = Date.now();
  let sent = 0;
  let done = 0;
  let allowed = 0;
  let limited = 0;
  let failed = 0;
  const samples = [];
  const sample = () =>
    samples.push({
      checks: done,
      seconds: (Date.now() - started) / 1000,
      rssMiB: rssMiB(child.pid),
    });
  sample();
  const sampler = setInterval(sample, 1000);

  function one() {
    return new Promise((resolve) => {
      const caller = sent++ % callers;
      const body = Buffer.from(frame);
      body.write(String(caller).padStart(5, '0'), digitsAt, 'latin1');
      const stream = client.request({
        ':method': 'POST',
        ':path': CHECK_PATH,
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      const chunks = [];
      stream.on('data', (c) => chunks.push(c));
      stream.on('end', () => {
        const msg = Buffer.concat(chunks).subarray(5);
        // CheckResponse.status (field 1) → code (field 1): absent means OK; 8 is RESOURCE_EXHAUSTED.
        if (msg.length >= 2 && msg[0] === 0x0a && msg[1] === 0) allowed++;
        else if (msg.length >= 4 && msg[0] === 0x0a && msg[2] === 0x08 && msg[3] === 8) limited++;
        else failed++;
        done++;
        resolve();
      });
      stream.on('error', () => {
        failed++;
        done++;
        resolve();
      });
      stream.end(body);
    });
  }
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (sent < checks && Date.now() - started < TIME_LIMIT_MS) await one();
    }),
  );
  clearInterval(sampler);
  sample();
  client.close();
  await stop(child);
  process.off('exit', stopNow);

  return summarise(samples, done, checks, callers, { allowed, limited, failed });
}

/** The same checks decided in this process, straight from wire bytes. */
async function inProcess(checks, callers) {
  const { decodeCheckRequest } = require(path.join(ROOT, 'dist/envoy/codec'));
  const app = await startInProcess();
  const { frame, digitsAt } = template();
  const started = Date.now();
  const samples = [];
  let done = 0;
  let allowed = 0;
  let limited = 0;
  const sample = () =>
    samples.push({
      checks: done,
      seconds: (Date.now() - started) / 1000,
      rssMiB: process.memoryUsage().rss / 1048576,
      heapMiB: process.memoryUsage().heapUsed / 1048576,
    });
  sample();
  let nextSample = Date.now() + 1000;
  while (done < checks && Date.now() - started < TIME_LIMIT_MS) {
    const batch = [];
    for (let i = 0; i < CONCURRENCY && done + i < checks; i++) {
      const body = Buffer.from(frame);
      body.write(String((done + i) % callers).padStart(5, '0'), digitsAt, 'latin1');
      batch.push(app.engine.decide(decodeCheckRequest(body.subarray(5))));
    }
    for (const d of await Promise.all(batch)) {
      if (d.allowed) allowed++;
      else if (d.status === 429) limited++;
      done++;
    }
    // Let the audit writer and timers run, as they would between requests.
    await new Promise((r) => setImmediate(r));
    if (Date.now() >= nextSample) {
      sample();
      nextSample = Date.now() + 1000;
    }
  }
  sample();
  await app.stop();
  return summarise(samples, done, checks, callers, {
    allowed,
    limited,
    failed: done - allowed - limited,
  });
}

function summarise(samples, done, checks, callers, counts) {
  const at = (fraction) =>
    samples.reduce((best, s) =>
      Math.abs(s.checks - fraction * done) < Math.abs(best.checks - fraction * done) ? s : best,
    );
  const warm = at(0.3); // after warm-up: the heap has grown to its working size
  const end = samples[samples.length - 1];
  return {
    checks: done,
    callers: Math.min(callers, done),
    seconds: end.seconds,
    ...counts,
    rssMiB: {
      start: samples[0].rssMiB,
      at30pct: warm.rssMiB,
      at50pct: at(0.5).rssMiB,
      end: end.rssMiB,
      peak: Math.max(...samples.map((s) => s.rssMiB)),
    },
    growthAfterWarmup: end.rssMiB / warm.rssMiB,
    flat: end.rssMiB <= warm.rssMiB * 1.15 && counts.failed === 0 && done === checks,
    samples: samples.filter((_, i) => i % 5 === 0 || i === samples.length - 1),
  };
}

async function memoryRun(
  checks = CHECKS,
  callers = CALLERS,
  grpcChecks = 200_000,
  grpcCallers = 20_000,
) {
  return {
    inProcess: await inProcess(checks, callers),
    grpc: await overGrpc(grpcChecks, grpcCallers),
  };
}

module.exports = { memoryRun };

if (require.main === module) {
  memoryRun(
    CHECKS,
    CALLERS,
    Number(process.argv[4] ?? 200_000),
    Number(process.argv[5] ?? 20_000),
  ).then(
    (r) => {
      for (const [name, { samples, ...summary }] of Object.entries(r))
        process.stdout.write(`${name}: ${JSON.stringify(summary)}\n`);
      process.exit(r.inProcess.flat && r.grpc.flat ? 0 : 1);
    },
    (err) => {
      process.stderr.write(`memory bench failed: ${err.message}\n`);
      process.exit(1);
    },
  );
}
