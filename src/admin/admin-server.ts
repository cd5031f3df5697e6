import { createHash, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { httpListenHost } from '../server/listen-address';

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
  /** Quarantined callers; absent where the state is not reachable from this process. */
  quarantine?: {
    list(): Promise<unknown[]>;
    release(caller: string): Promise<unknown | undefined>;
  };
  /** Grants that expire from disuse, by last use. */
  access?: {
    report(): Promise<unknown[]>;
    renew(filter: { policy?: string; rule?: string; caller?: string }): Promise<number>;
  };
  /** Reopens audit files at their path (logrotate); `reopened` counts the files, 0 for stdout. */
  audit?: { reopen(): Promise<{ reopened: number; error?: string }> };
}

export interface AdminOptions {
  /** Bearer token for changes (release, renew) from other hosts; loopback callers need none. */
  readonly token?: Buffer;
}

const MAX_ADMIN_BODY = 16 * 1024;

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
    private readonly options: AdminOptions = {},
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
      this.server.listen(port, httpListenHost(host), () =>
        resolve((this.server.address() as { port: number }).port),
      );
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
    if (
      req.method === 'POST' &&
      (path === '/v1/quarantine/release' ||
        path === '/v1/access/renew' ||
        path === '/v1/audit/reopen')
    )
      return this.change(req, res, path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, { error: 'method not allowed' });
    }
    switch (path) {
      case '/v1/quarantine':
        if (!this.providers.quarantine) return unavailable(res, 'quarantine');
        return send(res, 200, { callers: await this.providers.quarantine.list() });
      case '/v1/access':
        if (!this.providers.access) return unavailable(res, 'access');
        return send(res, 200, { grants: await this.providers.access.report() });
      case '/healthz':
        return send(res, 200, { status: 'ok' });
      case '/readyz': {
        const readiness = this.providers.readiness();
        const excluded = new Set(
          new URL(req.url ?? '/', 'http://admin').searchParams
            .getAll('exclude')
            .flatMap((v) => v.split(',')),
        );
        const ready = isReady(readiness, excluded);
        return send(res, ready ? 200 : 503, {
          status: ready ? 'ready' : 'not ready',
          checks: readiness.checks,
          ...(readiness.failing.length > 0 ? { failing: readiness.failing } : {}),
        });
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
        return send(res, 404, {
          error: 'not found',
          endpoints: [
            '/healthz',
            '/readyz',
            '/metrics',
            '/v1/policy',
            '/v1/quarantine',
            '/v1/access',
            'POST /v1/audit/reopen',
          ],
        });
    }
  }

  /**
   * Operator changes: from loopback (kubectl exec), or with the admin token. A web page on the
   * same host can POST to loopback too (a `text/plain` form needs no preflight), and a
   * DNS-rebinding page can even read the answers; browsers always send `Origin` on such
   * requests and name the page's host in `Host`, and cannot send `application/json` across
   * origins without a preflight that this server never answers.
   */
  private async change(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
  ): Promise<void> {
    if (req.headers.origin !== undefined)
      return send(res, 403, {
        error: 'changes are not taken from web pages (the request has an Origin header)',
      });
    const allowed = this.mayChange(req);
    if (allowed !== true) return send(res, 403, { error: allowed });
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json')
      return send(res, 415, { error: 'changes need content-type: application/json' });
    if (path === '/v1/audit/reopen') {
      if (!this.providers.audit) return unavailable(res, 'audit');
      const result = await this.providers.audit.reopen();
      if (result.error !== undefined)
        return send(res, 500, {
          error: `audit log cannot be reopened; records keep going to the old file: ${result.error}`,
        });
      return send(res, 200, { reopened: result.reopened });
    }
    const body = await readJson(req);
    if (body === undefined)
      return send(res, 400, {
        error: `body must be a JSON object of at most ${MAX_ADMIN_BODY} bytes`,
      });
    const text = (key: string): string | undefined =>
      typeof body[key] === 'string' &&
      (body[key] as string).length > 0 &&
      (body[key] as string).length <= 2048
        ? (body[key] as string)
        : undefined;
    if (path === '/v1/quarantine/release') {
      if (!this.providers.quarantine) return unavailable(res, 'quarantine');
      const caller = text('caller');
      if (caller === undefined)
        return send(res, 400, { error: 'caller (a SPIFFE ID) is required' });
      const released = await this.providers.quarantine.release(caller);
      this.log.info({ caller, released: released !== undefined }, 'quarantine release requested');
      return released === undefined
        ? send(res, 404, { error: 'caller is not quarantined', caller })
        : send(res, 200, { released });
    }
    if (!this.providers.access) return unavailable(res, 'access');
    const filter = {
      ...(text('policy') ? { policy: text('policy') } : {}),
      ...(text('rule') ? { rule: text('rule') } : {}),
      ...(text('caller') ? { caller: text('caller') } : {}),
    };
    if (filter.policy === undefined)
      return send(res, 400, { error: 'policy is required (and optionally rule and caller)' });
    const unknown = unknownPolicyOrRule(this.providers.policy(), filter.policy, filter.rule);
    if (unknown) return send(res, 404, { error: unknown });
    const renewed = await this.providers.access.renew(filter);
    this.log.info({ ...filter, renewed }, 'grant renewal requested');
    return send(res, 200, { renewed });
  }

  /** true, or why not. */
  private mayChange(req: http.IncomingMessage): true | string {
    const token = this.options.token;
    const header = req.headers.authorization;
    if (token !== undefined && typeof header === 'string' && header.startsWith('Bearer ')) {
      const given = Buffer.from(header.slice(7));
      // Hash both sides so the comparison is constant time whatever the lengths.
      return (
        timingSafeEqual(
          createHash('sha256').update(given).digest(),
          createHash('sha256').update(token).digest(),
        ) || REFUSED_CHANGE
      );
    }
    const remote = req.socket.remoteAddress ?? '';
    if (remote !== '127.0.0.1' && remote !== '::1' && remote !== '::ffff:127.0.0.1')
      return REFUSED_CHANGE;
    return (
      isLoopbackHost(req.headers.host ?? '') ||
      'changes from loopback need a Host that is a loopback name or address'
    );
  }
}

/** A renewal that names nothing served would report success while renewing nothing. */
function unknownPolicyOrRule(
  served: unknown,
  policy: string,
  rule: string | undefined,
): string | undefined {
  const policies =
    (served as { policies?: { name: string; rules: string[] }[] } | undefined)?.policies ?? [];
  const found = policies.find((p) => p.name === policy);
  if (found === undefined) return `no policy named '${policy}' is being served`;
  if (rule !== undefined && !found.rules.includes(rule))
    return `policy '${policy}' has no rule named '${rule}'`;
  return undefined;
}

const REFUSED_CHANGE =
  'changes need a loopback caller or the admin token (authorization: Bearer …)';

/** `localhost`, 127.0.0.0/8 or ::1, with or without a port: the names a rebinding page cannot put in Host. */
export function isLoopbackHost(host: string): boolean {
  let name = host.toLowerCase();
  if (name.startsWith('[')) {
    const close = name.indexOf(']');
    if (close === -1 || (close + 1 < name.length && name[close + 1] !== ':')) return false;
    name = name.slice(1, close);
    return name === '::1' || name === '::ffff:127.0.0.1';
  }
  const colon = name.indexOf(':');
  if (colon !== -1) name = name.slice(0, colon);
  if (name === 'localhost' || name === 'localhost.') return true;
  return isIP(name) === 4 && name.startsWith('127.');
}

function unavailable(res: http.ServerResponse, what: string): void {
  send(res, 501, {
    error: `${what} state is not available in this process (with --workers > 1 it needs --redis)`,
  });
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_ADMIN_BODY) return undefined;
    chunks.push(chunk as Buffer);
  }
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
