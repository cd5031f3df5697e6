#!/usr/bin/env node
// In-process cost of one check: decode the wire bytes, decide (example policies, in-memory
// store, audit to /dev/null, metrics as in production), build and encode the response. Several
// built checkouts side by side, one child process each, rounds interleaved so every ratio is
// taken within the same run on this noisy machine. The number is CPU time (process.cpuUsage,
// all threads: GC and the audit file's writes count) per check, which a shared machine moves
// far less than wall time; wall time is printed beside it.
// Usage: node bench/per-check.js [--rounds 5] [--checks 100000] [--kind allowed|refused] NAME=DIR ...
//   e.g. node bench/per-check.js base=/tmp/base48 perf=.
// Profile one build alone: node --cpu-prof bench/per-check.js --solo DIR [--rounds 3]
'use strict';
const { fork } = require('node:child_process');
const path = require('node:path');

const { KINDS, startInProcess, takeOption } = require('./lib');

const args = process.argv.slice(2);
const ROUNDS = takeOption(args, '--rounds', 5, 20);
const CHECKS = takeOption(args, '--checks', 100_000, 1_000_000);
const KIND = takeOption(args, '--kind', 'allowed');
const CHILD = takeOption(args, '--child', undefined);
const SOLO = takeOption(args, '--solo', undefined);
const BATCH = 64;

/** The codec moved from server/ to envoy/; either layout loads, so older builds compare. */
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

async function loop(dir, rounds, gate, report) {
  const { decodeCheckRequest, encodeCheckResponse } = requireCodec(path.join(dir, 'dist'));
  const { toCheckResponse } = require(path.join(dir, 'dist/respond/check-response'));
  const { loadProtos } = require(path.join(dir, 'dist/server/protos'));
  const app = await startInProcess(dir);
  // The allowed or refused CheckRequest bench/run.js sends, in the build's own protos.
  const bytes = loadProtos().authorization.Check.requestSerialize(
    KINDS[KIND === 'refused' ? 'refused' : 'allowed'].req,
  );
  const one = (d) => encodeCheckResponse(toCheckResponse(d)).length;
  const first = await app.engine.decide(decodeCheckRequest(bytes));
  const answer = `${first.allowed ? 'allow' : 'deny'} ${first.code ?? ''} ${one(first)}B`;
  const run = async (n) => {
    let sink = 0;
    const started = performance.now();
    const cpu = process.cpuUsage();
    for (let done = 0; done < n; done += BATCH) {
      const batch = [];
      for (let i = 0; i < BATCH; i++) batch.push(app.engine.decide(decodeCheckRequest(bytes)));
      for (const d of await Promise.all(batch)) sink += one(d);
      // One event-loop turn per batch, as under the server: the audit writer flushes here.
      await new Promise((r) => setImmediate(r));
    }
    if (sink === 0) throw new Error('nothing encoded');
    const used = process.cpuUsage(cpu);
    return { cpu: (used.user + used.system) / n, wall: ((performance.now() - started) * 1000) / n };
  };
  for (let r = 0; r < rounds; r++) {
    await gate();
    if (r === 0) await run(20_000);
    report(await run(CHECKS), answer);
  }
  await app.stop?.();
}

if (CHILD) {
  let pending;
  process.on('message', (m) => {
    if (m === 'round') pending?.();
  });
  loop(
    CHILD,
    Infinity,
    // The first wait tells the parent this build is loaded.
    () =>
      new Promise((r) => {
        if (pending === undefined) process.send('ready');
        pending = r;
      }),
    (us, answer) => process.send({ ...us, answer }),
  ).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else if (SOLO) {
  loop(
    path.resolve(SOLO),
    ROUNDS,
    async () => undefined,
    (us, answer) => {
      console.log(
        `${us.cpu.toFixed(2)} µs CPU, ${us.wall.toFixed(2)} µs wall per check (${answer})`,
      );
    },
  ).then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
} else {
  const builds = args.map((a) => {
    const [name, dir] = a.split('=');
    return { name, dir: path.resolve(dir), results: [], wall: [] };
  });
  if (builds.length === 0) {
    console.error('usage: node bench/per-check.js [--rounds N] [--checks N] NAME=DIR ...');
    process.exit(2);
  }
  (async () => {
    for (const b of builds) {
      b.child = fork(path.join(__dirname, 'per-check.js'), [
        '--child',
        b.dir,
        '--checks',
        String(CHECKS),
        '--kind',
        KIND,
      ]);
      b.next = () =>
        new Promise((resolve, reject) => {
          b.child.once('message', resolve);
          b.child.once('exit', (code) => reject(new Error(`${b.name} exited ${code}`)));
        });
      // Started, idle until its first round.
      await new Promise((resolve, reject) => {
        b.child.once('message', resolve);
        b.child.once('exit', (code) =>
          reject(new Error(`${b.name} exited ${code} while starting`)),
        );
      });
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const b of builds) {
        // Each child waits (idle) until its turn, so only one runs at a time.
        const answered = b.next();
        b.child.send('round');
        const m = await answered;
        b.results.push(m.cpu);
        b.wall.push(m.wall);
        b.answer = m.answer;
        console.log(
          `round ${round + 1} ${b.name} ${m.cpu.toFixed(2)} µs CPU, ${m.wall.toFixed(2)} µs wall per check (${m.answer})`,
        );
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const ref = builds[0];
    for (const b of builds) {
      const ratios = b.results.map((us, i) => us / ref.results[i]);
      const wallRatios = b.wall.map((us, i) => us / ref.wall[i]);
      console.log(
        `${b.name}: median ${median(b.results).toFixed(2)} µs CPU per check, per-round ratio to ${ref.name} median ${median(ratios).toFixed(3)} (${ratios.map((x) => x.toFixed(2)).join(' ')}); wall ${median(b.wall).toFixed(2)} µs, ratio ${median(wallRatios).toFixed(3)}`,
      );
      b.child.kill('SIGTERM');
    }
  })().catch((err) => {
    console.error(err.message);
    for (const b of builds) b.child?.kill('SIGTERM');
    process.exitCode = 1;
  });
}
