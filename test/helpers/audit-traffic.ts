import { spawnServe, type ServeProcess } from './cli';
import { checkClient } from './grpc-client';

/** Runs a real `gatehouse serve` over `policies`, sends each CheckRequest in order, and stops it: the audit log is then complete. */
export async function recordTraffic(
  policies: string,
  auditFile: string,
  requests: readonly unknown[],
): Promise<void> {
  let server: ServeProcess | undefined;
  try {
    server = await spawnServe([
      '--policies',
      policies,
      '--trust-domain',
      'shop.example',
      '--audit-log',
      auditFile,
      '--no-watch',
    ]);
    const client = checkClient(server.port);
    for (const request of requests) await client.check(request);
    client.close();
  } finally {
    if (server) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  }
}
