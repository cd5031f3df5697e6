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
// Usage: node bench/overload.js [seconds per phase = 8] [FLAG,VALUE,... (more 2x phases, up to 4)]
//   e.g. node bench/overload.js 6 --shed-lag,30             (not part of make bench)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { KINDS, grpcFrame, h2load, loadProtos, rssMiB, sleep, startServe, stop } = require('./lib');

const SECONDS = Math.min(60, Number(process.argv[2] ?? 8));
const EXTRA_PHASES = process.argv.slice(3, 7).map((a) => a.split(','));
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-overload-'));
const PROBES_PER_SECOND = 20;
const DEADLINE_MS = 250;
const children = new Set();

const protos = loadProtos();
const REQUEST = KINDS.allowed.req;
const frameFile = path.join(TMP, 'check.bin');
fs.writeFileSync(frameFile, grpcFrame(protos.authorization.Check.requestSerialize(REQUEST)));

async function startGatehouse(extra) {
  const { child, port } = await startServe({ extra, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  // An open port is not yet a worker that decides: wait until one check is answered.
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
    await sleep(200);
  }
  client.close();
  return { child, port };
}

process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

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
  const load = await h2load({
    port,
    frameFile,
    seconds: SECONDS,
    args: ['-H', `grpc-timeout: ${DEADLINE_MS}m`, ...h2args],
  });
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
  // Further phases to compare settings: each extra argument is one, its flags comma-separated.
  for (const flags of EXTRA_PHASES)
    results.push(await phase(`2x, ${flags.join(' ')}`, flags, overload));
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
