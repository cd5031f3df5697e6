import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

function requireBuild(): void {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: run \`make build\` (make test builds first)`);
}

export function runCli(
  args: string[],
  input?: string,
  env?: Record<string, string>,
): { status: number | null; stdout: string; stderr: string } {
  requireBuild();
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    input,
    ...(env ? { env: { ...process.env, ...env } } : {}),
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** runCli without blocking the event loop (servers in this process keep answering). */
export function runCliAsync(
  args: string[],
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  requireBuild();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, timeout: 20_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
  /** The HTTP authorization mode's port, when --http-port was given. */
  httpPort: number | undefined;
  stderr: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Spawns `gatehouse serve` on a free port and waits for its "serving" log line. */
export async function spawnServe(
  args: string[],
  env: Record<string, string> = {},
  options: { defaultWorkers?: boolean } = {},
): Promise<ServeProcess> {
  requireBuild();
  // One process unless the test asks for the server's own default.
  const workers = options.defaultWorkers ? [] : ['--workers', '1'];
  // jest sandboxes process.env; child_process needs the variables passed explicitly.
  // Defaults first: a later flag in `args` overrides them.
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--grpc-port',
      '0',
      '--admin-port',
      '0',
      ...workers,
      '--listen-address',
      '127.0.0.1',
      // A busy test machine lags the event loop; only the back-pressure test asks for it.
      '--grpc-pressured-streams',
      '0',
      ...args,
    ],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
    },
  );
  let stderr = '';
  let stdout = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const [port, adminPort] = await new Promise<[number, number]>((resolve, reject) => {
    const timer = setTimeout(() => {
      // A server still starting (or hung) must not outlive the test that gave up on it.
      child.kill('SIGKILL');
      reject(new Error(`server did not start:\n${stderr}`));
    }, 15_000);
    child.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
      const grpc = /"grpcPort":(\d+)/.exec(stderr);
      const admin = /"adminPort":(\d+)/.exec(stderr);
      if (grpc && admin) {
        clearTimeout(timer);
        resolve([Number(grpc[1]), Number(admin[1])]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before serving:\n${stderr}`));
    });
  });
  const http = /"httpPort":(\d+)/.exec(stderr);
  return {
    child,
    port,
    adminPort,
    httpPort: http ? Number(http[1]) : undefined,
    stderr: () => stderr,
    stdout: () => stdout,
    exited,
  };
}
