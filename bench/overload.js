#!/usr/bin/env node
// Overload: what is answered, and how fast, when offered twice what one worker can decide.
// Three phases in one run against one `gatehouse serve --workers 1` each:
//   baseline   saturating load (h2load 4 connections x 16 streams, closed loop);
//   unshed     2x that rate, open loop over 40 connections (up to 2,000 streams), with
//              shedding switched off (--max-in-flight 0 --shed-lag 0);
//   shed       the same 2x load against the defaults.
// h2load sends grpc-timeout: 250m as Envoy does with a 250 ms grpc_service timeout. h2load only
// sees HTTP 200s (gRPC status rides in trailers), so a separate probe client sends 20 checks a
// second with a 250 ms deadline and records each one's outcome and latency: p99 of the
// *answered* probes is the number that matters to Envoy. RSS is sampled every 200 ms.
// Usage: node bench/overload.js [seconds per phase = 8]      (not part of make bench)
'use strict';
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const grpc = require('@grpc/grpc-js');

const ROOT = path.resolve(__dirname, '..');
const SECONDS = Math.min(60, Number(process.argv[2] ?? 8));
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-overload-'));
const CHECK = '/envoy.service.auth.v3.Authorization/Check';
const PROBES_PER_SECOND = 20;
const DEADLINE_MS = 250;
const children = new Set();

const { loadProtos } = require(path.join(ROOT, 'dist/server/protos'));
const protos = loadProtos();
const checkDef = protos.authorization.Check;
const REQUEST = {
  attributes: {
    source: {
      principal: 'spiffe://shop.example/ns/frontend/sa/web',
      address: { socketAddress: { address: '10.0.3.7', portValue: 51234 } },
    },
    destination: { principal: 'spiffe://shop.example/ns/orders/sa/orders' },
    request: {
      http: {
        id: '1',
        method: 'GET',
        path: '/v1/orders/42',
        host: 'orders.shop.svc.cluster.local',
        scheme: 'https',
        protocol: 'HTTP/2',
        headers: {
          ':authority': 'orders.shop.svc.cluster.local',
          ':method': 'GET',
          ':path': '/v1/orders/42',
          ':scheme': 'https',
          'user-agent': 'checkout/1.4',
          'x-request-id': 'b2a7c3de-0f6a-4d0e-a1f4-5d2c7e9b8a10',
        },
      },
    },
  },
};
const frameFile = path.join(TMP, 'check.bin');
{
  const pb = checkDef.requestSerialize(REQUEST);
  const frame = Buffer.alloc(5 + pb.length);
  frame.writeUInt32BE(pb.length, 1);
  pb.copy(frame, 5);
  fs.writeFileSync(frameFile, frame);
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startGatehouse(extra) {
  const port = await freePort();
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
      '--log-level',
      'warn',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.add(child);
  child.on('exit', () => children.delete(child));
  // --log-level warn prints nothing on start: wait for the port to answer a check.
  const client = new protos.AuthorizationClient(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  );
  for (let i = 0; ; i++) {
    const ok = await new Promise((res) =>
      client.Check(REQUEST, { deadline: Date.now() + 1000 }, (e) => res(!e)),
    );
    if (ok) break;
    if (i > 50) throw new Error('gatehouse did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
  client.close();
  return { child, port };
}

function stop(child) {
  if (child.exitCode !== null) return Promise.resolve();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  return exited;
}
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function h2load(port, args) {
  const all = [
    '-D',
    String(SECONDS),
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
    '-H',
    `grpc-timeout: ${DEADLINE_MS}m`,
    '-d',
    frameFile,
    ...args,
    `http://127.0.0.1:${port}${CHECK}`,
  ];
  return new Promise((resolve, reject) => {
    execFile(
      'h2load',
      all,
      { encoding: 'utf8', timeout: (SECONDS + 30) * 1000, maxBuffer: 16 << 20 },
      (err, out) => {
        if (err) return reject(err);
        const reqs = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(out);
        if (!reqs) return reject(new Error(`unexpected h2load output:\n${out}`));
        resolve({ rps: Number(reqs[2]) });
      },
    );
  });
}

/** Probes at a fixed rate on their own connection for the whole phase; each has Envoy's deadline. */
function probe(port) {
  const client = new protos.AuthorizationClient(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
    { 'grpc.use_local_subchannel_pool': 1 },
  );
  const outcomes = [];
  const pending = [];
  const timer = setInterval(() => {
    const started = performance.now();
    pending.push(
      new Promise((resolve) =>
        client.Check(REQUEST, { deadline: Date.now() + DEADLINE_MS }, (err) => {
          outcomes.push({ code: err ? err.code : 0, ms: performance.now() - started });
          resolve();
        }),
      ),
    );
  }, 1000 / PROBES_PER_SECOND);
  return async () => {
    clearInterval(timer);
    await Promise.all(pending);
    client.close();
    return outcomes;
  };
}

async function phase(name, extra, h2args) {
  const { child, port } = await startGatehouse(extra);
  const rss = [rssMiB(child.pid)];
  const sampler = setInterval(() => rss.push(rssMiB(child.pid)), 200);
  const stopProbe = probe(port);
  const load = await h2load(port, h2args);
  const outcomes = await stopProbe();
  clearInterval(sampler);
  await stop(child);
  const answered = outcomes
    .filter((o) => o.code === 0)
    .map((o) => o.ms)
    .sort((a, b) => a - b);
  const p = (q) =>
    answered.length
      ? answered[Math.min(answered.length - 1, Math.floor(q * answered.length))]
      : NaN;
  const count = (code) => outcomes.filter((o) => o.code === code).length;
  return {
    phase: name,
    offeredOrMeasuredRps: Math.round(load.rps),
    probes: outcomes.length,
    answered: answered.length,
    refusedOverloaded: count(grpc.status.RESOURCE_EXHAUSTED),
    deadlineExceeded: count(grpc.status.DEADLINE_EXCEEDED),
    answeredP50Ms: Number(p(0.5).toFixed(1)),
    answeredP99Ms: Number(p(0.99).toFixed(1)),
    rssStartMiB: Math.round(rss[0]),
    rssMaxMiB: Math.round(Math.max(...rss)),
    rssEndMiB: Math.round(rss[rss.length - 1]),
  };
}

async function main() {
  const results = [];
  const baseline = await phase('baseline (saturating)', [], ['-c', '4', '-m', '16']);
  results.push(baseline);
  // Twice what one worker answered, offered open-loop over many connections, as a mesh does.
  const connections = 40;
  const perClient = Math.max(1, Math.round((2 * baseline.offeredOrMeasuredRps) / connections));
  const overload = ['-c', String(connections), '-m', '50', `--rps=${perClient}`];
  results.push(
    await phase('2x, shedding off', ['--max-in-flight', '0', '--shed-lag', '0'], overload),
  );
  results.push(await phase('2x, defaults', [], overload));
  console.log(
    JSON.stringify(
      {
        when: new Date().toISOString(),
        secondsPerPhase: SECONDS,
        cpus: os.cpus().length,
        node: process.version,
        offeredRps2x: perClient * connections,
        results,
      },
      null,
      2,
    ),
  );
  console.table(results);
  fs.rmSync(TMP, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
