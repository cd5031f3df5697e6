import * as http from 'node:http';
import type { Logger } from 'pino';

export interface Readiness {
  readonly ready: boolean;
  readonly checks: Record<string, string>;
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
        return send(res, readiness.ready ? 200 : 503, { status: readiness.ready ? 'ready' : 'not ready', checks: readiness.checks });
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
