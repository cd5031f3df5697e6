#!/usr/bin/env node
// Side by side: the same CheckRequest against several built checkouts of Gatehouse, in turn,
// round after round, so each build's req/s is measured beside the others on the same noisy
// machine. Usage: node bench/ab.js [--rounds 3] [--seconds 3] NAME=DIR[,flag,flag] ...
//   e.g. node bench/ab.js base=/tmp/base main=. streams100=.,--grpc-max-streams,100
// Each DIR is a checkout with dist/ built; its own policies/ are served. h2load 4 x 16 streams.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  if (i === -1) return fallback;
  const v = Number(args.splice(i, 2)[1]);
  return Math.min(10, Math.max(1, v));
};
const ROUNDS = opt('--rounds', 3);
const SECONDS = opt('--seconds', 3);
const builds = args.map((a) => {
  const [name, spec] = a.split('=');
  const [dir, ...extra] = spec.split(',');
  return { name, dir: path.resolve(dir), extra };
});
if (builds.length === 0) {
  console.error('usage: node bench/ab.js NAME=DIR[,flag,...] ...');
  process.exit(2);
}

const { loadProtos } = require(path.join(__dirname, '..', 'dist/server/protos'));
const check = loadProtos().authorization.Check;
const REQUEST = {
  attributes: {
    source: { principal: 'spiffe://shop.example/ns/frontend/sa/web' },
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
          'x-request-id': 'b2a7c3de',
        },
      },
    },
  },
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-ab-'));
const frameFile = path.join(tmp, 'check.bin');
const pb = check.requestSerialize(REQUEST);
const frame = Buffer.alloc(5 + pb.length);
frame.writeUInt32BE(pb.length, 1);
pb.copy(frame, 5);
fs.writeFileSync(frameFile, frame);

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function ready(port) {
  for (let i = 0; i < 100; i++) {
    if (
      await new Promise((r) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          r(true);
        });
        s.on('error', () => r(false));
      })
    )
      return;
    await sleep(100);
  }
  throw new Error(`server on ${port} did not start`);
}

(async () => {
  const results = Object.fromEntries(builds.map((b) => [b.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const b of builds) {
      const port = await freePort();
      const child = spawn(
        process.execPath,
        [
          path.join(b.dir, 'dist/cli/main.js'),
          'serve',
          '--policies',
          path.join(b.dir, 'policies'),
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
          path.join(tmp, 'audit.log'),
          '--log-level',
          'warn',
          ...b.extra,
        ],
        { stdio: 'ignore' },
      );
      try {
        await ready(port);
        await sleep(500);
        const out =
          spawnSync(
            'h2load',
            [
              '-D',
              String(SECONDS),
              '--warm-up-time=1',
              '-c',
              '4',
              '-m',
              '16',
              '-H',
              'content-type: application/grpc',
              '-H',
              'te: trailers',
              '-d',
              frameFile,
              `http://127.0.0.1:${port}/envoy.service.auth.v3.Authorization/Check`,
            ],
            { encoding: 'utf8', timeout: (SECONDS + 10) * 1000 },
          ).stdout ?? '';
        const rps = Math.round(Number(/finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0));
        const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? -1);
        if (failed !== 0) throw new Error(`${b.name}: h2load reported ${failed} failed requests`);
        results[b.name].push(rps);
        console.log(`round ${round + 1} ${b.name} ${rps} req/s`);
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
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
