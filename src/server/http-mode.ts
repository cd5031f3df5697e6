import * as https from 'node:https';
import type { AskerGate } from './askers';
import * as http from 'node:http';
import type { Logger } from 'pino';
import type { CheckInput, HttpRequestInput } from '../envoy/check-input';
import type { Decision } from '../pipeline/decision';
import type { DecisionEngine } from '../pipeline/engine';
import { allowHeaders, denyBody, denyHeaders, headersToRemove } from '../respond/check-response';
import { httpListenHost } from './listen-address';
import type { LoadShedder } from './shedding';
import type { ReceiveBudget } from './receive-budget';

/**
 * Which proxy is asking, and so where the original request is described:
 *  envoy    Envoy's HTTP ext_authz service: the request line and headers are the original
 *           request (path after an optional prefix); 200 allows, any other status denies.
 *  nginx    auth_request: X-Original-Method / X-Original-URI / X-Original-Host, set by the
 *           nginx config; nginx passes only 2xx, 401 and 403, so the deny body also travels
 *           in x-gatehouse-deny-body for nginx to return.
 *  traefik  forwardAuth: X-Forwarded-Method / X-Forwarded-Uri / X-Forwarded-Host.
 */
export type HttpDialect = 'envoy' | 'nginx' | 'traefik';
export const HTTP_DIALECTS: readonly HttpDialect[] = ['envoy', 'nginx', 'traefik'];

export interface HttpModeOptions {
  readonly host: string;
  readonly port: number;
  readonly dialect: HttpDialect;
  /** Envoy `http_service.path_prefix`, removed before authorising. */
  readonly pathPrefix?: string;
  /** Header in which the proxy forwards the client certificate (URL-encoded PEM). */
  readonly certificateHeader?: string;
  /**
   * Most body bytes read per request (Envoy's `with_request_body` forwards the buffered body).
   * Beyond it the first `maxBodyBytes` are authorised as a partial body, as Envoy marks one
   * cut at `max_request_bytes`, and the rest is discarded unread. Default 1 MiB.
   */
  readonly maxBodyBytes?: number;
  /** Who may ask: with TLS, HTTPS with client certificates required, and askers checked as on the gRPC port. */
  readonly askers?: AskerGate;
  /** A reason to refuse every check now (503, the proxy fails closed); undefined to decide. */
  readonly unavailable?: () => string | undefined;
  /**
   * The process's overload bounds, shared with the gRPC port (--max-in-flight, --shed-lag): a
   * check past them is answered 503 before its body is read, and never decided.
   */
  readonly shedder?: LoadShedder;
  /**
   * Body bytes held at once across all requests (--max-receive-bytes, shared with the gRPC
   * port): a body that would pass it is answered 503, unread and undecided.
   */
  readonly receiveBudget?: ReceiveBudget;
  /** Open connections at most (the gRPC listener's --grpc-max-connections); default 1024. */
  readonly maxConnections?: number;
  /** A request's headers must arrive within this (the gRPC preface timeout's twin); default 5000. */
  readonly headersTimeoutMs?: number;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const ORIGINAL: Record<
  Exclude<HttpDialect, 'envoy'>,
  { method: string; uri: string; host: string }
> = {
  nginx: { method: 'x-original-method', uri: 'x-original-uri', host: 'x-original-host' },
  traefik: { method: 'x-forwarded-method', uri: 'x-forwarded-uri', host: 'x-forwarded-host' },
};

/** The HTTP adapter: the same decision function as gRPC, answered the way each proxy reads it. */
export class HttpAuthServer {
  private readonly server: http.Server;
  private boundPort = 0;
  private draining = false;
  private readonly maxBodyBytes: number;

  constructor(
    private readonly engine: DecisionEngine,
    private readonly log: Logger,
    private readonly options: HttpModeOptions,
  ) {
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    // NaN or a negative bound would silently disable the bound itself (every comparison false).
    if (!Number.isSafeInteger(this.maxBodyBytes) || this.maxBodyBytes < 0)
      throw new RangeError(
        `maxBodyBytes must be a non-negative integer, not ${options.maxBodyBytes}`,
      );
    const headersTimeout = options.headersTimeoutMs ?? 5000;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      if (options.askers?.refuseHttp(req.socket)) {
        // Never reaches the engine: no state changes and no decision record for a refused asker.
        req.resume();
        res
          .writeHead(403, { 'content-type': 'application/json' })
          .end('{"error":"forbidden","reason":"asker is not authorised to ask"}');
        return;
      }
      // HTTP proxies send no deadline: only the in-flight and event-loop bounds apply.
      if (options.shedder?.refuse(Infinity) !== undefined) {
        req.resume();
        res.writeHead(503, { 'content-length': '0' }).end();
        return;
      }
      if (!announcesBody(req)) {
        // Header-only (the common case): decide now rather than wait for an 'end' with nothing before it.
        req.resume();
        this.decide(req, res, undefined, false);
        return;
      }
      this.readBody(req, res);
    };
    const tls = options.askers?.httpsOptions();
    // The checker runs often enough that a silent connection is closed near headersTimeout, not 30 s later.
    const requestTimeout = Math.max(10_000, headersTimeout);
    // requestTimeout is given at creation: node refuses a headersTimeout above it (default 300 s).
    const serverOptions = {
      maxHeaderSize: 64 * 1024,
      headersTimeout,
      requestTimeout,
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    };
    this.server = tls
      ? https.createServer({ ...tls, ...serverOptions }, handler)
      : http.createServer(serverOptions, handler);
    this.server.maxConnections = options.maxConnections ?? 1024;
    this.server.keepAliveTimeout = 65_000;
  }

  get port(): number {
    return this.boundPort;
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, httpListenHost(this.options.host), () => {
        this.boundPort = (this.server.address() as { port: number }).port;
        resolve(this.boundPort);
      });
    });
  }

  /**
   * Stops accepting; requests in flight are answered, each with `connection: close` so busy
   * keep-alive connections end after their answer; idle ones close now, and whatever is still
   * open at `deadlineMs` is cut (a proxy's pooled connection would otherwise hold the
   * process until the keep-alive timeout).
   */
  close(deadlineMs: number): Promise<void> {
    this.draining = true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.server.closeAllConnections(), deadlineMs);
      timer.unref();
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }

  private decide(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: string | undefined,
    partial: boolean,
  ): void {
    if (this.options.unavailable?.() !== undefined) {
      res.writeHead(503, { 'content-length': '0' }).end();
      return;
    }
    const done = this.options.shedder?.begin();
    this.engine.decide(this.checkRequest(req, body, partial)).then(
      (decision) => {
        done?.();
        this.respond(res, decision);
      },
      (err: Error) => {
        done?.();
        this.log.error({ err: err.message }, 'http check failed');
        res.writeHead(500).end();
      },
    );
  }

  /**
   * Buffers the body up to maxBodyBytes, then decides. Past the bound it decides at once on
   * what it has, marked partial, and lets the remainder flow past unbuffered, so a large
   * upload costs neither memory nor the time to receive it. A request whose client goes
   * away before its body ends is never decided: there is no one to answer.
   */
  private readBody(req: http.IncomingMessage, res: http.ServerResponse): void {
    const max = this.maxBodyBytes;
    const budget = this.options.receiveBudget;
    const chunks: Buffer[] = [];
    let size = 0;
    // Whatever was reserved is held until the answer is sent or the client has gone.
    if (budget) res.once('close', () => budget.release(size));
    const done = (partial: boolean): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      // A declared length means a body even if empty here; chunked framing only if data came.
      const body =
        size > 0 || hasContentLength(req)
          ? Buffer.concat(chunks, size).toString('utf8')
          : undefined;
      this.decide(req, res, body, partial);
    };
    const onData = (chunk: Buffer): void => {
      const room = max - size;
      if (budget && !budget.reserve(Math.min(chunk.length, room))) {
        req.off('data', onData);
        req.off('end', onEnd);
        req.resume();
        res.writeHead(503, { 'content-length': '0', connection: 'close' }).end();
        return;
      }
      if (chunk.length > room) {
        if (room > 0) chunks.push(chunk.subarray(0, room));
        size = max;
        req.resume(); // keep draining without a listener: the rest is read and dropped
        done(true);
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    };
    const onEnd = (): void => done(false);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', () => undefined); // an aborted upload: the socket is gone, nothing to answer
  }

  /** The CheckRequest Envoy would have sent for this request, so the engine sees one shape. */
  private checkRequest(
    req: http.IncomingMessage,
    body: string | undefined,
    partial: boolean,
  ): CheckInput {
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[key] = Array.isArray(value) ? value.join(',') : value;
    }
    let method = req.method ?? '';
    let path = req.url ?? '';
    let host = headers['host'] ?? '';
    const dialect = this.options.dialect;
    if (dialect === 'envoy') {
      const prefix = this.options.pathPrefix;
      if (prefix) path = path.startsWith(prefix) ? path.slice(prefix.length) || '/' : '';
    } else {
      const names = ORIGINAL[dialect];
      method = headers[names.method] ?? '';
      path = headers[names.uri] ?? '';
      host = headers[names.host] ?? host;
    }
    const certificate = this.options.certificateHeader
      ? (headers[this.options.certificateHeader] ?? '')
      : '';
    headers[':authority'] = host;
    headers[':method'] = method;
    headers[':path'] = path;
    // Envoy's own marker for a body cut at its buffer limit; ours is cut the same way.
    if (partial) headers['x-envoy-auth-partial-body'] = 'true';
    const httpRequest: HttpRequestInput =
      body === undefined ? { method, path, host, headers } : { method, path, host, headers, body };
    return {
      attributes: { source: certificate ? { certificate } : {}, request: { http: httpRequest } },
    };
  }

  private respond(res: http.ServerResponse, decision: Decision): void {
    if (this.draining) res.setHeader('connection', 'close');
    if (decision.allowed) {
      const { upstream, client } = allowHeaders(decision);
      for (const [k, v] of upstream) res.setHeader(k, v);
      for (const [k, v] of client) res.setHeader(k, v);
      // Envoy consumes this control header and strips the listed headers upstream.
      const remove = headersToRemove(decision);
      if (this.options.dialect === 'envoy' && remove.length > 0)
        res.setHeader('x-envoy-auth-headers-to-remove', remove.join(', '));
      res.writeHead(200, { 'content-length': '0' });
      res.end();
      return;
    }
    const body = denyBody(decision);
    for (const [k, v] of denyHeaders(decision)) res.setHeader(k, v);
    if (this.options.dialect === 'nginx') res.setHeader('x-gatehouse-deny-body', asciiJson(body));
    res.writeHead(decision.status, { 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}

/** A positive content-length, or chunked framing (which may still turn out to carry nothing). */
function announcesBody(req: http.IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || hasContentLength(req);
}

function hasContentLength(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return length !== undefined && Number(length) > 0;
}

/** JSON with every non-ASCII character escaped, so it is a valid header value. */
function asciiJson(json: string): string {
  return json.replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
