import * as http from 'node:http';
import type { Logger } from 'pino';

export interface Readiness {
  readonly checks: Record<string, string>;
  /** Names of the checks that fail (e.g. `server`, `workers`, `redis`); none: ready. */
  readonly failing: readonly string[];
}

/**
 * Ready unless a check fails that the caller did not exclude: `/readyz?exclude=redis` (as
 * kube-apiserver's `/readyz?exclude=etcd`) lets a probe keep replicas in service through a
 * Redis outage, where limits follow `onBackendError` and identity and permissions still apply.
 */
export function isReady(readiness: Readiness, excluded: ReadonlySet<string>): boolean {
  return readiness.failing.every((name) => excluded.has(name));
}

/** What the admin endpoints report; the single process and the worker primary both provide it. */
export interface AdminProviders {
  readiness(): Readiness;
  metrics(): Promise<{ contentType: string; body: string }>;
  policy(): unknown;
}

/**
 * The admin HTTP server: /healthz (the process answers), /readyz (can take traffic),
 * /metrics (Prometheus) and /v1/policy (the version being served). GET only; it never sees
 * check traffic or credentials.
 */
export class AdminServer {
  private readonly server: http.Server;

  constructor(
    private readonly providers: AdminProviders,
    private readonly log: Logger,
  ) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        this.log.error({ err: err.message, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
        else res.end();
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve((this.server.address() as { port: number }).port));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, { error: 'method not allowed' });
    }
    switch (path) {
      case '/healthz':
        return send(res, 200, { status: 'ok' });
      case '/readyz': {
        const readiness = this.providers.readiness();
        const excluded = new Set(new URL(req.url ?? '/', 'http://admin').searchParams.getAll('exclude').flatMap((v) => v.split(',')));
        const ready = isReady(readiness, excluded);
        return send(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks: readiness.checks, ...(readiness.failing.length > 0 ? { failing: readiness.failing } : {}) });
      }
      case '/metrics': {
        const { contentType, body } = await this.providers.metrics();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
        return;
      }
      case '/v1/policy':
        return send(res, 200, this.providers.policy());
      default:
        return send(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/metrics', '/v1/policy'] });
    }
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
