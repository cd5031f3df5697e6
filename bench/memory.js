#!/usr/bin/env node
// RSS over a million checks from a hundred thousand distinct callers (each its own token
// bucket): memory must level off, not grow with the number of callers seen. Two runs:
//  - in-process: the real Gatehouse (decoder, engine, audit, metrics, in-process buckets) in
//    this process, fed the wire bytes directly: a million checks in well under a minute;
//  - over gRPC: a separate `gatehouse serve` driven by a node:http2 client, a smaller run
//    (the client, not the server, is the bottleneck on two cores), for the transport's share.
// Usage: node bench/memory.js [checks] [callers]   (run by make bench; also on its own)
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http2 = require('node:http2');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const CHECKS = Number(process.argv[2] ?? 1_000_000);
const CALLERS = Number(process.argv[3] ?? 100_000);
const CONCURRENCY = 64;
const TIME_LIMIT_MS = 300_000;
const CHECK = '/envoy.service.auth.v3.Authorization/Check';

const { loadProtos } = require(path.join(ROOT, 'dist/server/protos'));
const checkDef = loadProtos().authorization.Check;

/** A gRPC-framed CheckRequest whose caller ends in five digits we overwrite per request. */
function template() {
  const principal = 'spiffe://shop.example/ns/checkout/sa/w00000';
  const pb = checkDef.requestSerialize({
    attributes: {
      source: { principal },
      // The receiving workload's identity selects its policy (`workloads:`), as Envoy sends it.
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
            'x-request-id': 'mem',
          },
        },
      },
    },
  });
  const frame = Buffer.alloc(5 + pb.length);
  frame.writeUInt32BE(pb.length, 1);
  pb.copy(frame, 5);
  return { frame, digitsAt: frame.indexOf(Buffer.from(principal)) + principal.length - 5 };
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function overGrpc(checks, callers) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, 'dist/cli/main.js'),
      'serve',
      '--policies',
      path.join(ROOT, 'policies'),
      '--trust-domain',
      'shop.example',
      '--grpc-port',
      String(port),
      '--admin-port',
      '0',
      '--listen-address',
      '127.0.0.1',
      '--workers',
      '1',
      '--no-watch',
      '--audit-log',
      '/dev/null',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const stop = () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  };
  process.on('exit', stop);
  await new Promise((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (b) => {
      err += b;
      if (err.includes('"grpcPort"')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`gatehouse exited ${code}: ${err.slice(-400)}`)));
  });

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
      rssMiB: rssKiB(child.pid) / 1024,
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
        ':path': CHECK,
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
  stop();

  return summarise(samples, done, checks, callers, { allowed, limited, failed });
}

/** The same checks decided in this process, straight from wire bytes. */
async function inProcess(checks, callers) {
  const pino = require('pino');
  const { Gatehouse } = require(path.join(ROOT, 'dist/app'));
  const { decodeCheckRequest } = require(path.join(ROOT, 'dist/envoy/codec'));
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
