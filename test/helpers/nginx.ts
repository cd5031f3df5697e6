import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PortInUseError, startOnFreePort } from './ports';

const INSTALL_HINT =
  'nginx is not installed: run `make test-deps` (or `apt-get install -y nginx-light`); `make test` installs it';

export function requireNginx(): void {
  if (spawnSync('sh', ['-c', 'command -v nginx']).status !== 0) throw new Error(INSTALL_HINT);
}

export interface NginxProcess {
  readonly port: number;
  /** nginx's working directory: its configuration, pid file and error.log. */
  readonly prefix: string;
  readonly child: ChildProcess;
  errorLog(): string;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** The inside of the `http { }` block for nginx listening on 127.0.0.1:`port`. */
  readonly http: (port: number) => string;
  readonly workerConnections?: number;
  /** Distinguishes the temporary directories of different suites. */
  readonly name?: string;
}

/**
 * A real nginx in the foreground on a free loopback port, stopped by PID. Ready once it wrote
 * its pid file, which nginx does only after binding every listen socket: an answer on the port
 * could come from whoever else holds it. A port taken between choosing and binding is retried
 * on another.
 */
export async function startNginx(options: NginxOptions): Promise<NginxProcess> {
  requireNginx();
  return startOnFreePort(async (port) => {
    const prefix = mkdtempSync(path.join(tmpdir(), `gh-${options.name ?? 'nginx'}-`));
    for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(prefix, d));
    const conf = path.join(prefix, 'nginx.conf');
    writeFileSync(conf, configFor(prefix, port, options));
    const child = spawn('nginx', ['-p', prefix, '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout!.resume();
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const errorLog = (): string => {
      const file = path.join(prefix, 'error.log');
      return existsSync(file) ? readFileSync(file, 'utf8') : '';
    };
    const stop = async (): Promise<void> => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGQUIT');
      await exited;
    };
    await untilBound(child, path.join(prefix, 'nginx.pid'), () => stderr + errorLog(), port, stop);
    return { port, prefix, child, errorLog, stop };
  });
}

async function untilBound(
  child: ChildProcess,
  pidFile: string,
  output: () => string,
  port: number,
  stop: () => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    // nginx retries a taken port for a few seconds before exiting; there is no point waiting.
    if (output().includes('Address already in use')) {
      await stop();
      throw new PortInUseError(port, 'nginx could not bind it');
    }
    if (child.exitCode !== null) throw new Error(`nginx exited: ${output()}`);
    if (existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() === String(child.pid)) return;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not start within 10 s: ${output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function configFor(prefix: string, port: number, options: NginxOptions): string {
  return `
${process.getuid?.() === 0 ? 'user root;' : ''}
daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections ${options.workerConnections ?? 64}; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${options.http(port)}
}
`;
}
