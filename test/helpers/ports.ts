import * as net from 'node:net';

/**
 * A loopback port that was free when asked. Nothing holds it afterwards, so use it only where
 * nothing must listen (an unreachable endpoint), or through startOnFreePort, which survives
 * another process taking it before the child binds it.
 */
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

/** What a starter throws when its child could not bind the port because something else holds it. */
export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    detail: string,
  ) {
    super(`port ${port} is in use: ${detail}`);
  }
}

export interface StartOnFreePortOptions {
  /** Ports tried before giving up; default 5. */
  readonly attempts?: number;
  /** Where candidate ports come from; default freePort. */
  readonly choosePort?: () => Promise<number>;
}

/**
 * Starts a child that binds a loopback port chosen here. Between choosing a port and the child
 * binding it another process may take it; `start` reports that as PortInUseError and is tried
 * again on another port, so a collision costs a retry, not a failed test.
 */
export async function startOnFreePort<T>(
  start: (port: number) => Promise<T>,
  options: StartOnFreePortOptions = {},
): Promise<T> {
  const attempts = options.attempts ?? 5;
  const choosePort = options.choosePort ?? freePort;
  const collisions: string[] = [];
  for (let i = 0; i < attempts; i++) {
    try {
      return await start(await choosePort());
    } catch (err) {
      if (!(err instanceof PortInUseError)) throw err;
      collisions.push(err.message);
    }
  }
  throw new Error(`no free port after ${attempts} attempts: ${collisions.join('; ')}`);
}
