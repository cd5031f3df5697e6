import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { PortInUseError, startOnFreePort, type StartOnFreePortOptions } from './ports';

const INSTALL_HINT =
  'redis-server is not installed: run `make test-deps` (or `apt-get install -y redis-server`); `make test` installs it';

export function requireRedisServer(): void {
  const found = spawnSync('sh', ['-c', 'command -v redis-server && command -v redis-cli'], {
    encoding: 'utf8',
  });
  if (found.status !== 0) throw new Error(INSTALL_HINT);
}

/** Kept for callers that import it from here; see ports.ts for what it may be used for. */
export { freePort } from './ports';

export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  /** SIGSTOP: the socket stays open but nothing answers. */
  freeze(): void;
  thaw(): void;
  stop(): Promise<void>;
  /** Starts again on the same port (after stop). */
  restart(): Promise<void>;
  client(): Redis;
}

/**
 * A real redis-server on a free loopback port, no persistence, stopped by PID. Ready once the
 * child itself says so: a port taken by another process between choosing and binding makes the
 * child exit, and the start is tried again on another port.
 */
export async function startRedis(
  extraArgs: string[] = [],
  ports: StartOnFreePortOptions = {},
): Promise<RedisProcess> {
  requireRedisServer();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-redis-'));
  const argsFor = (port: number): string[] => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
    ...extraArgs,
  ];
  let chosen = 0;
  let child: ChildProcess = await startOnFreePort(async (port) => {
    const started = await launch(argsFor(port), port);
    chosen = port;
    return started;
  }, ports);
  const args = argsFor(chosen);
  const handle: RedisProcess = {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    get pid() {
      return child.pid!;
    },
    freeze: () => process.kill(child.pid!, 'SIGSTOP'),
    thaw: () => process.kill(child.pid!, 'SIGCONT'),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      try {
        process.kill(child.pid!, 'SIGCONT');
      } catch {
        /* already gone */
      }
      child.kill('SIGKILL');
      await exited;
    },
    restart: async () => {
      child = await launch(args, chosen);
    },
    client: () => new Redis(chosen, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 }),
  };
  return handle;
}

/**
 * Spawns redis-server and resolves once it is listening: its own log line, not a PING that
 * another server holding the port could answer.
 */
function launch(args: string[], port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let settled = false;
  return new Promise((resolve, reject) => {
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(child);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(new Error(`redis-server on ${port} was not ready within 10 s: ${output}`));
    }, 10_000);
    // The pipes are read for the child's whole life, so its log never fills them and blocks it.
    const collect = (b: Buffer): void => {
      if (settled) return;
      output += b.toString();
      if (output.includes('Ready to accept connections')) settle();
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    child.once('exit', () =>
      settle(
        output.includes('Address already in use')
          ? new PortInUseError(port, 'redis-server could not bind it')
          : new Error(`redis-server exited: ${output}`),
      ),
    );
  });
}

export interface RedisCluster {
  readonly nodes: RedisProcess[];
  readonly urls: string[];
  cli(port: number, ...args: string[]): string;
  stop(): Promise<void>;
}

/** A real Redis Cluster on loopback: `masters` masters, each with `replicas` replicas. */
export async function startRedisCluster(masters = 3, replicas = 0): Promise<RedisCluster> {
  requireRedisServer();
  const count = masters * (1 + replicas);
  const nodes: RedisProcess[] = [];
  for (let i = 0; i < count; i++) {
    nodes.push(
      await startRedis([
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${i}.conf`,
        '--cluster-node-timeout',
        '2000',
      ]),
    );
  }
  const create = spawnSync(
    'redis-cli',
    [
      '--cluster',
      'create',
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (create.status !== 0)
    throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
  const cli = (port: number, ...args: string[]): string =>
    spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).stdout.trim();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = nodes.every((n) => cli(n.port, 'cluster', 'info').includes('cluster_state:ok'));
    const replicasUp =
      replicas === 0 ||
      nodes.filter((n) => cli(n.port, 'role').startsWith('slave')).length === masters * replicas;
    if (ok && replicasUp) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    nodes,
    urls: nodes.slice(0, masters).map((n) => n.url),
    cli,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/** One redis-server for the enclosing describe: started before its tests, stopped after them. */
export function redisForSuite(extraArgs: string[] = []): () => RedisProcess {
  let redis: RedisProcess | undefined;
  beforeAll(async () => {
    redis = await startRedis(extraArgs);
  });
  afterAll(async () => {
    await redis?.stop();
  });
  return () => {
    if (!redis) throw new Error('redis-server is not running: use it inside a test');
    return redis;
  };
}
