#!/usr/bin/env node
// make bench: Gatehouse against the floor (bench/bare-server.js) on the same load generator
// (h2load), in the same run, alternating, three rounds. Writes bench/results/latest.{json,md,svg}.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { ROOT, KINDS, freePort, grpcFrame, h2load, loadProtos, serveArgs } = require('./lib');
const { memoryRun } = require('./memory');

const OUT = path.join(__dirname, 'results');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONNS = 4;
const STREAMS = 16;
const started = Date.now();
const children = [];

function start(cmd, args, readyText) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    const onData = (b) => {
      out += b.toString();
      if (out.includes(readyText)) resolve(child);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${out.slice(-500)}`)));
    setTimeout(() => reject(new Error(`${cmd} did not start: ${out.slice(-500)}`)), 20000).unref();
  });
}

function stopAll() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
process.on('exit', stopAll);
process.on('SIGINT', () => {
  stopAll();
  process.exit(130);
});

// Realistic CheckRequests, as Envoy sends them: mTLS principal and a dozen headers.
const protos = loadProtos();
for (const [kind, k] of Object.entries(KINDS)) {
  k.file = path.join(TMP, `${kind}.bin`);
  fs.writeFileSync(k.file, grpcFrame(protos.authorization.Check.requestSerialize(k.req)));
}

/** One decoded answer of each kind: the numbers are about real decisions. */
async function verify(port, label) {
  const client = new protos.AuthorizationClient(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  );
  for (const [kind, k] of Object.entries(KINDS)) {
    const r = await new Promise((res, rej) => client.Check(k.req, (e, v) => (e ? rej(e) : res(v))));
    const code = r.status?.code ?? 0;
    if (label !== 'bare' && !k.codes.includes(code))
      throw new Error(`${label} answered ${kind} with code ${code}`);
  }
  client.close();
}

async function measure(port, kind, rps) {
  const log = path.join(TMP, `h2load-${Date.now()}.log`);
  const args = ['--warm-up-time=1', '-c', String(CONNS), '-m', String(STREAMS), '--log-file', log];
  if (rps) args.push(`--rps=${Math.max(1, Math.round(rps / CONNS))}`);
  const load = await h2load({ port, frameFile: KINDS[kind].file, seconds: SECONDS, args });
  if (load.failed + load.errored > 0) throw new Error(`h2load saw failures:\n${load.out}`);
  const latencies = fs
    .readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => Number(l.split('\t')[2]))
    .filter((n) => n >= 0)
    .sort((a, b) => a - b);
  fs.rmSync(log);
  const pct = (p) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] / 1000;
  return { rps: load.rps, p50: pct(0.5), p99: pct(0.99), n: latencies.length };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  if (spawnSync('sh', ['-c', 'command -v h2load && command -v redis-server']).status !== 0) {
    throw new Error(
      'h2load and redis-server are needed: apt-get install -y nghttp2-client redis-server (make bench installs them)',
    );
  }
  const ports = {
    bare: await freePort(),
    inproc: await freePort(),
    redis: await freePort(),
    w2: await freePort(),
    redisServer: await freePort(),
  };
  await start(
    process.execPath,
    [path.join(__dirname, 'bare-server.js'), String(ports.bare)],
    'bare ready',
  );
  await start(
    'redis-server',
    [
      '--port',
      String(ports.redisServer),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ],
    'Ready to accept',
  );
  const gatehouse = (port, extra) =>
    start(
      process.execPath,
      serveArgs({ port, auditLog: path.join(TMP, `audit-${port}.log`), logLevel: 'info', extra }),
      '"grpcPort"',
    );
  await gatehouse(ports.inproc, ['--workers', '1']);
  await gatehouse(ports.redis, [
    '--workers',
    '1',
    '--redis',
    `redis://127.0.0.1:${ports.redisServer}`,
  ]);
  await new Promise((r) => setTimeout(r, 500));
  for (const [label, port] of [
    ['bare', ports.bare],
    ['inproc', ports.inproc],
    ['redis', ports.redis],
  ])
    await verify(port, label);

  const rounds = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const r = { round, kinds: {} };
    for (const kind of Object.keys(KINDS)) {
      const bare1 = await measure(ports.bare, kind);
      const inproc = await measure(ports.inproc, kind);
      const bare2 = await measure(ports.bare, kind);
      const redis = await measure(ports.redis, kind);
      // Fixed rate at half the bare ceiling: latency where nothing saturates.
      const rate = (bare1.rps + bare2.rps) / 2 / 2;
      const bareHalf = await measure(ports.bare, kind, rate);
      const inprocHalf = await measure(ports.inproc, kind, rate);
      const redisHalf = await measure(ports.redis, kind, rate);
      r.kinds[kind] = { bare1, inproc, bare2, redis, rate, bareHalf, inprocHalf, redisHalf };
      process.stdout.write(
        `round ${round} ${kind.padEnd(8)} bare ${bare1.rps.toFixed(0)}/${bare2.rps.toFixed(0)}  in-process ${inproc.rps.toFixed(0)} (${(inproc.rps / bare1.rps).toFixed(2)})  redis ${redis.rps.toFixed(0)} (${(redis.rps / bare2.rps).toFixed(2)})  p99@half bare ${bareHalf.p99.toFixed(2)} in-proc ${inprocHalf.p99.toFixed(2)} redis ${redisHalf.p99.toFixed(2)} ms\n`,
      );
    }
    rounds.push(r);
  }

  // --workers 2 against one worker, same round, on the allowed route.
  for (const c of children.slice(2)) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  await gatehouse(ports.w2, ['--workers', '2']);
  const w1port = await freePort();
  await gatehouse(w1port, ['--workers', '1']);
  await new Promise((r) => setTimeout(r, 1500));
  const workers = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const one = await measure(w1port, 'allowed');
    const two = await measure(ports.w2, 'allowed');
    workers.push({ round, one, two });
    process.stdout.write(
      `round ${round} workers  1: ${one.rps.toFixed(0)}  2: ${two.rps.toFixed(0)} (${(two.rps / one.rps).toFixed(2)}x)\n`,
    );
  }

  const summary = {};
  for (const kind of Object.keys(KINDS)) {
    const ks = rounds.map((r) => r.kinds[kind]);
    summary[kind] = {
      bareRps: median(ks.map((k) => (k.bare1.rps + k.bare2.rps) / 2)),
      inprocRatio: median(ks.map((k) => k.inproc.rps / k.bare1.rps)),
      redisRatio: median(ks.map((k) => k.redis.rps / k.bare2.rps)),
      p99HalfBare: median(ks.map((k) => k.bareHalf.p99)),
      p99HalfInprocRatio: median(ks.map((k) => k.inprocHalf.p99 / k.bareHalf.p99)),
      p99HalfRedisRatio: median(ks.map((k) => k.redisHalf.p99 / k.bareHalf.p99)),
      p50HalfInproc: median(ks.map((k) => k.inprocHalf.p50)),
      p50SatBare: median(ks.map((k) => (k.bare1.p50 + k.bare2.p50) / 2)),
      p99SatBare: median(ks.map((k) => (k.bare1.p99 + k.bare2.p99) / 2)),
      p50SatInprocRatio: median(ks.map((k) => k.inproc.p50 / k.bare1.p50)),
      p99SatInprocRatio: median(ks.map((k) => k.inproc.p99 / k.bare1.p99)),
      p50SatRedisRatio: median(ks.map((k) => k.redis.p50 / k.bare2.p50)),
      p99SatRedisRatio: median(ks.map((k) => k.redis.p99 / k.bare2.p99)),
      p50HalfBare: median(ks.map((k) => k.bareHalf.p50)),
      p50HalfInprocRatio: median(ks.map((k) => k.inprocHalf.p50 / k.bareHalf.p50)),
      p50HalfRedisRatio: median(ks.map((k) => k.redisHalf.p50 / k.bareHalf.p50)),
    };
  }
  const workersRatio = median(workers.map((w) => w.two.rps / w.one.rps));
  process.stdout.write('memory: a million checks from a hundred thousand callers...\n');
  const memory = process.env.BENCH_SKIP_MEMORY ? undefined : await memoryRun();
  const memoryTargets = memory
    ? [
        {
          what: 'RSS end / after warm-up, 1M checks, 100k callers (in-process)',
          value: memory.inProcess.growthAfterWarmup,
          target: 1.15,
          ok: memory.inProcess.flat,
          lowerIsBetter: true,
        },
        {
          what: 'RSS end / after warm-up, gRPC server',
          value: memory.grpc.growthAfterWarmup,
          target: 1.15,
          ok: memory.grpc.flat,
          lowerIsBetter: true,
        },
      ]
    : [];
  const targets = [
    ...Object.entries(summary).map(([kind, s]) => ({
      what: `in-process throughput / bare (${kind})`,
      value: s.inprocRatio,
      target: 0.85,
      ok: s.inprocRatio >= 0.85,
    })),
    ...Object.entries(summary).map(([kind, s]) => ({
      what: `Redis throughput / bare (${kind})`,
      value: s.redisRatio,
      target: 0.65,
      ok: s.redisRatio >= 0.65,
    })),
    ...Object.entries(summary).map(([kind, s]) => ({
      what: `p99 at half the bare ceiling / bare's (${kind}, in-process)`,
      value: s.p99HalfInprocRatio,
      target: 1.5,
      ok: s.p99HalfInprocRatio <= 1.5,
      lowerIsBetter: true,
    })),
    {
      what: '--workers 2 / one worker (allowed)',
      value: workersRatio,
      target: 1.2,
      ok: workersRatio >= 1.2,
    },
    ...memoryTargets,
  ];
  const result = {
    when: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.version },
    method: { rounds: ROUNDS, seconds: SECONDS, connections: CONNS, streams: STREAMS },
    summary,
    workers: { ratio: workersRatio, runs: workers },
    memory,
    targets,
    rounds,
    elapsedSeconds: Math.round((Date.now() - started) / 1000),
  };
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  fs.writeFileSync(path.join(OUT, 'latest.md'), markdown(result));
  fs.writeFileSync(path.join(OUT, 'latest.svg'), chart(targets));
  process.stdout.write(
    `\n${markdown(result)}\nbench took ${result.elapsedSeconds}s; results in bench/results/\n`,
  );
  stopAll();
}

function markdown(r) {
  const f = (x) => x.toFixed(2);
  const lines = [
    `# Gatehouse bench (${r.when})`,
    '',
    `${r.machine.cpus} cores, Node ${r.machine.node}; h2load ${r.method.connections} connections × ${r.method.streams} streams, ${r.method.seconds} s per run, ${r.method.rounds} rounds, bare and Gatehouse alternating; every ratio is a median of per-round ratios against the bare grpc-js server measured beside it.`,
    '',
    '## Throughput at saturation',
    '',
    '| route | bare req/s | in-process / bare | Redis / bare |',
    '|---|---|---|---|',
  ];
  for (const [kind, s] of Object.entries(r.summary))
    lines.push(`| ${kind} | ${s.bareRps.toFixed(0)} | ${f(s.inprocRatio)} | ${f(s.redisRatio)} |`);
  for (const [at, key] of [
    ['saturation', 'Sat'],
    ['a fixed rate of half the bare ceiling', 'Half'],
  ]) {
    lines.push(
      '',
      `## Latency at ${at} (ms; ratios to bare)`,
      '',
      '| route | bare p50 | bare p99 | in-process p50 / p99 | Redis p50 / p99 |',
      '|---|---|---|---|---|',
    );
    for (const [kind, s] of Object.entries(r.summary)) {
      const v = (stat, of) => f(s[`${stat}${key}${of}`]);
      lines.push(
        `| ${kind} | ${v('p50', 'Bare')} | ${v('p99', 'Bare')} | ${v('p50', 'InprocRatio')} / ${v('p99', 'InprocRatio')} | ${v('p50', 'RedisRatio')} / ${v('p99', 'RedisRatio')} |`,
      );
    }
  }
  lines.push('', `--workers 2 / one worker (allowed route): ${f(r.workers.ratio)}×`);
  if (r.memory) {
    lines.push(
      '',
      '## Memory',
      '',
      '| run | checks | callers | RSS start | after warm-up (30%) | end | peak | end / warm-up |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const [name, m] of Object.entries(r.memory)) {
      lines.push(
        `| ${name} | ${m.checks} | ${m.callers} | ${m.rssMiB.start.toFixed(0)} MiB | ${m.rssMiB.at30pct.toFixed(0)} MiB | ${m.rssMiB.end.toFixed(0)} MiB | ${m.rssMiB.peak.toFixed(0)} MiB | ${f(m.growthAfterWarmup)} |`,
      );
    }
  }
  lines.push('', '## Targets', '', '| target | measured | goal | met |', '|---|---|---|---|');
  for (const t of r.targets)
    lines.push(
      `| ${t.what} | ${f(t.value)} | ${t.lowerIsBetter ? '≤' : '≥'} ${t.target} | ${t.ok ? 'yes' : 'no'} |`,
    );
  return `${lines.join('\n')}\n`;
}

/** A bar per target, its goal as a tick: taken in at a glance. */
function chart(targets) {
  const W = 900,
    row = 26,
    left = 460,
    scale = 300 / 2;
  const bars = targets
    .map((t, i) => {
      const y = 30 + i * row;
      const w = Math.min(t.value, 2) * scale;
      const goal = left + t.target * scale;
      return `<text x="${left - 8}" y="${y + 14}" text-anchor="end" font-size="12">${t.what.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</text>
<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="18" fill="${t.ok ? '#2e7d32' : '#c62828'}"/>
<line x1="${goal}" x2="${goal}" y1="${y - 3}" y2="${y + 21}" stroke="#000" stroke-width="2"/>
<text x="${Math.max(left + w, goal) + 6}" y="${y + 14}" font-size="12">${t.value.toFixed(2)}</text>`;
    })
    .join('\n');
  const H = 40 + targets.length * row;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<text x="10" y="18" font-size="14" font-weight="bold">Gatehouse vs bare grpc-js (ratio; black tick = target; green met, red missed)</text>
${bars}
</svg>
`;
}

module.exports = { chart, markdown };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench failed: ${err.message}\n`);
    stopAll();
    process.exit(1);
  });
}
