import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';

const INSTALL_HINT =
  'redis-server is not installed: run `make test-deps` (or `apt-get install -y redis-server`); `make test` installs it';

export function requireRedisServer(): void {
  const found = spawnSync('sh', ['-c', 'command -v redis-server && command -v redis-cli'], {
    encoding: 'utf8',
  });
  if (found.status !== 0) throw new Error(INSTALL_HINT);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

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

/** A real redis-server on a free loopback port, no persistence, stopped by PID. */
export async function startRedis(extraArgs: string[] = [], port?: number): Promise<RedisProcess> {
  requireRedisServer();
  const chosen = port ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-redis-'));
  const args = [
    '--port',
    String(chosen),
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
  let child: ChildProcess = await launch(args, chosen);
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

async function launch(args: string[], port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (output += b.toString()));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
    if (
      spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() ===
      'PONG'
    )
      return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server on ${port} did not answer PING: ${output}`);
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
