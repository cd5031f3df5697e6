// What the bench scripts share: the CheckRequests they send, a built `serve` on loopback, h2load
// and its numbers, RSS of a child, and their bounded command-line options.
'use strict';
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';
const HOST = 'orders.shop.svc.cluster.local';
const DESTINATION = 'spiffe://shop.example/ns/orders/sa/orders';

/** A CheckRequest as Envoy sends it: mTLS principal, peer address and a dozen headers. */
function checkRequest(principal, method, p) {
  const headers = {
    ':authority': HOST,
    ':method': method,
    ':path': p,
    ':scheme': 'https',
    'content-type': 'application/json',
    'user-agent': 'checkout/1.4',
    'x-request-id': 'b2a7c3de-0f6a-4d0e-a1f4-5d2c7e9b8a10',
    'x-forwarded-proto': 'https',
    'x-forwarded-for': '10.0.3.7',
    accept: 'application/json',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    'x-b3-traceid': '0af7651916cd43dd',
    'x-envoy-expected-rq-timeout-ms': '250',
  };
  return {
    attributes: {
      source: { principal, address: { socketAddress: { address: '10.0.3.7', portValue: 51234 } } },
      destination: { principal: DESTINATION },
      request: {
        http: {
          id: '1',
          method,
          path: p,
          host: HOST,
          scheme: 'https',
          protocol: 'HTTP/2',
          headers,
        },
      },
    },
  };
}

/** One route of each outcome under the example policies, with the codes they may answer. */
const KINDS = {
  allowed: {
    req: checkRequest('spiffe://shop.example/ns/frontend/sa/web', 'GET', '/v1/orders/42'),
    codes: [0],
  },
  refused: {
    req: checkRequest('spiffe://shop.example/ns/checkout/sa/batch', 'POST', '/v1/orders'),
    codes: [7],
  },
  limited: {
    req: checkRequest('spiffe://shop.example/ns/frontend/sa/web', 'POST', '/v1/orders'),
    codes: [0, 8],
  },
};

/**
 * A serialized CheckRequest whose caller ends in five digits, and where they start, so that a
 * copy per check can stand for up to 100,000 callers (each its own token bucket).
 */
function callerTemplate(checkDef) {
  const principal = 'spiffe://shop.example/ns/checkout/sa/w00000';
  const pb = checkDef.requestSerialize({
    attributes: {
      source: { principal },
      // The receiving workload's identity selects its policy (`workloads:`), as Envoy sends it.
      destination: { principal: DESTINATION },
      request: {
        http: {
          method: 'POST',
          path: '/v1/orders',
          host: HOST,
          headers: { ':authority': HOST, ':method': 'POST', ':path': '/v1/orders' },
        },
      },
    },
  });
  return { pb, digitsAt: pb.indexOf(Buffer.from(principal)) + principal.length - 5 };
}

/** The message behind gRPC's 5-byte prefix (uncompressed flag, big-endian length). */
function grpcFrame(pb) {
  const frame = Buffer.alloc(5 + pb.length);
  frame.writeUInt32BE(pb.length, 1);
  pb.copy(frame, 5);
  return frame;
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Until a TCP connect to the port succeeds: 100 tries, 100 ms apart. */
async function waitForPort(port) {
  for (let i = 0; i < 100; i++) {
    const open = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (open) return;
    await sleep(100);
  }
  throw new Error(`server on ${port} did not start`);
}

/** `node DIR/dist/cli/main.js serve ...` on loopback, no admin port, no policy watch. */
function serveArgs({ dir = ROOT, port, auditLog = '/dev/null', logLevel = 'warn', extra = [] }) {
  return [
    path.join(dir, 'dist/cli/main.js'),
    'serve',
    '--policies',
    path.join(dir, 'policies'),
    '--trust-domain',
    'shop.example',
    '--grpc-port',
    String(port),
    '--admin-port',
    '0',
    '--listen-address',
    '127.0.0.1',
    '--no-watch',
    '--audit-log',
    auditLog,
    '--log-level',
    logLevel,
    ...extra,
  ];
}

/** A built checkout's `serve` with one worker on a free loopback port, once the port accepts. */
async function startServe({ stdio = 'ignore', extra = [], ...options } = {}) {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    serveArgs({ ...options, port, extra: ['--workers', '1', ...extra] }),
    { stdio },
  );
  const exited = new Promise((_, reject) =>
    child.once('exit', (code) => reject(new Error(`serve exited ${code} while starting`))),
  );
  exited.catch(() => undefined);
  try {
    await Promise.race([waitForPort(port), exited]);
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { child, port };
}

/** SIGTERM to the child's PID, resolved once it has exited. */
function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  return exited;
}

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * h2load posting one framed CheckRequest for `seconds` (killed 30 s after), with `args` for
 * connections, streams and rate. Resolves with req/s and the request counts.
 */
function h2load({ port, frameFile, seconds, args = [] }) {
  const all = [
    '-D',
    String(seconds),
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
    '-d',
    frameFile,
    ...args,
    `http://127.0.0.1:${port}${CHECK_PATH}`,
  ];
  return new Promise((resolve, reject) => {
    execFile(
      'h2load',
      all,
      { encoding: 'utf8', timeout: (seconds + 30) * 1000, maxBuffer: 16 << 20 },
      (err, out) => {
        if (err) return reject(err);
        const reqs = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(out);
        const counts =
          /requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored/.exec(
            out,
          );
        if (!reqs || !counts) return reject(new Error(`unexpected h2load output:\n${out}`));
        resolve({
          rps: Number(reqs[2]),
          failed: Number(counts[1]),
          errored: Number(counts[2]),
          out,
        });
      },
    );
  });
}

/** The in-process Gatehouse of a built checkout: example policies, audit to /dev/null, silent. */
function startInProcess(dir = ROOT) {
  const pino = require(path.join(dir, 'node_modules/pino'));
  const { Gatehouse } = require(path.join(dir, 'dist/app'));
  return Gatehouse.start(
    {
      policiesDir: path.join(dir, 'policies'),
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      trustDomains: ['shop.example'],
      trustXfcc: false,
      auditLog: '/dev/null',
      drainTimeoutMs: 1000,
    },
    pino({ level: 'silent' }),
  );
}

/**
 * Removes `name VALUE` from args. Without `max` the value is returned as given; with it, as a
 * number held to 1..max so no option can make a run unbounded.
 */
function takeOption(args, name, fallback, max) {
  const i = args.indexOf(name);
  if (i === -1) return fallback;
  const v = args.splice(i, 2)[1];
  return max === undefined ? v : Math.min(max, Math.max(1, Number(v)));
}

const loadProtos = () => require(path.join(ROOT, 'dist/server/protos')).loadProtos();

module.exports = {
  ROOT,
  CHECK_PATH,
  KINDS,
  checkRequest,
  callerTemplate,
  grpcFrame,
  freePort,
  sleep,
  serveArgs,
  startServe,
  stop,
  rssMiB,
  h2load,
  startInProcess,
  takeOption,
  loadProtos,
};
