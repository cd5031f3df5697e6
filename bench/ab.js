#!/usr/bin/env node
// Side by side: the same CheckRequest against several built checkouts of Gatehouse, in turn,
// round after round, so each build's req/s is measured beside the others on the same noisy
// machine. Usage: node bench/ab.js [--rounds 3] [--seconds 3] [--kind allowed|refused|limited]
//   NAME=DIR[,flag,flag] ...
//   e.g. node bench/ab.js base=/tmp/base main=. streams100=.,--grpc-max-streams,100
// Each DIR is a checkout with dist/ built; its own policies/ are served. h2load 4 x 16 streams.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {
  KINDS,
  grpcFrame,
  h2load,
  loadProtos,
  sleep,
  startServe,
  stop,
  takeOption,
} = require('./lib');

const args = process.argv.slice(2);
const ROUNDS = takeOption(args, '--rounds', 3, 10);
const SECONDS = takeOption(args, '--seconds', 3, 10);
// Which of bench/run.js's requests to send (allowed, refused or limited); allowed by default.
const kindAt = args.indexOf('--kind');
const KIND = kindAt === -1 ? 'allowed' : args.splice(kindAt, 2)[1];
if (!Object.hasOwn(KINDS, KIND)) {
  console.error(`--kind must be one of ${Object.keys(KINDS).join(', ')}`);
  process.exit(2);
}
const builds = args.map((a) => {
  const [name, spec] = a.split('=');
  const [dir, ...extra] = spec.split(',');
  return { name, dir: path.resolve(dir), extra };
});
if (builds.length === 0) {
  console.error('usage: node bench/ab.js NAME=DIR[,flag,...] ...');
  process.exit(2);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-ab-'));
const frameFile = path.join(tmp, 'check.bin');
fs.writeFileSync(
  frameFile,
  grpcFrame(loadProtos().authorization.Check.requestSerialize(KINDS[KIND].req)),
);

(async () => {
  const results = Object.fromEntries(builds.map((b) => [b.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const b of builds) {
      const { child, port } = await startServe({
        dir: b.dir,
        auditLog: path.join(tmp, 'audit.log'),
        extra: b.extra,
      });
      try {
        await sleep(500);
        const load = await h2load({
          port,
          frameFile,
          seconds: SECONDS,
          args: ['--warm-up-time=1', '-c', '4', '-m', '16'],
        });
        if (load.failed !== 0)
          throw new Error(`${b.name}: h2load reported ${load.failed} failed requests`);
        const rps = Math.round(load.rps);
        results[b.name].push(rps);
        console.log(`round ${round + 1} ${b.name} ${rps} req/s`);
      } finally {
        await stop(child);
      }
    }
  }
  console.log(
    JSON.stringify(
      { when: new Date().toISOString(), node: process.version, seconds: SECONDS, results },
      null,
      2,
    ),
  );
  fs.rmSync(tmp, { recursive: true, force: true });
})().catch((err) => {
  console.error(err.message);
  process.exitCode = 1;
});
