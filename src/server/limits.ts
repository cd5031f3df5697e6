import type * as grpc from '@grpc/grpc-js';
import * as net from 'node:net';
import type { Logger } from 'pino';
import { DEFAULT_MAX_BODY_BYTES } from './http-mode';

/**
 * What one gRPC listener lets a peer hold. Envoy is the only legitimate caller, but the port
 * is reachable by anything on the pod network, so every resource a connection can pin has a
 * bound: bytes per message, streams per connection, connections per process, and time spent
 * before the HTTP/2 preface and while idle.
 */
export interface TransportLimits {
  /** grpc.max_receive_message_length: largest CheckRequest accepted. */
  readonly maxReceiveBytes: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to every connection. */
  readonly maxConcurrentStreams: number;
  /** Open connections per process; one more is closed as soon as it is accepted. */
  readonly maxConnections: number;
  /** A connection must send the HTTP/2 preface (or a TLS ClientHello) within this. */
  readonly prefaceTimeoutMs: number;
  /** grpc.max_connection_idle_ms: a connection with no stream for this long gets GOAWAY. */
  readonly idleTimeoutMs: number;
  /** grpc.keepalive_time_ms / _timeout_ms: the server pings; a peer that does not answer is closed. */
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
}

/** Room for the headers, attributes and metadata that travel beside a forwarded body. */
export const HEADERS_MARGIN_BYTES = 64 * 1024;

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  maxReceiveBytes: DEFAULT_MAX_BODY_BYTES + HEADERS_MARGIN_BYTES,
  maxConcurrentStreams: 100,
  maxConnections: 1024,
  prefaceTimeoutMs: 5_000,
  idleTimeoutMs: 300_000,
  keepaliveTimeMs: 60_000,
  keepaliveTimeoutMs: 20_000,
};

/** The grpc-js server options that carry the limits grpc-js itself enforces. */
export function grpcServerOptions(limits: TransportLimits): grpc.ServerOptions {
  return {
    'grpc.max_receive_message_length': limits.maxReceiveBytes,
    'grpc.max_send_message_length': limits.maxReceiveBytes,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
    'grpc.keepalive_time_ms': limits.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': limits.keepaliveTimeoutMs,
  };
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const TLS_HANDSHAKE_RECORD = 0x16;

export type RefusedConnection = 'connection_limit' | 'preface_timeout' | 'not_http2';

export interface ConnectionGateEvents {
  readonly onRefused?: (reason: RefusedConnection) => void;
}

/**
 * The listening socket in front of grpc-js. grpc-js accepts every connection and waits
 * forever for its preface; this gate owns the TCP listener, refuses connections past the
 * cap, and hands a connection to grpc-js only once it has shown the HTTP/2 preface (or a TLS
 * ClientHello, whose own handshake then follows) within `prefaceTimeoutMs`. The bytes it
 * read are put back, so grpc-js sees the connection from its first byte.
 */
export class ConnectionGate {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private readonly waiting = new Set<net.Socket>();
  private boundPort = 0;

  constructor(
    private readonly inject: (socket: net.Socket) => void,
    private readonly limits: TransportLimits,
    private readonly log: Logger,
    private readonly events: ConnectionGateEvents = {},
  ) {
    this.server = net.createServer({ pauseOnConnect: false, noDelay: true }, (socket) => this.accept(socket));
  }

  get port(): number {
    return this.boundPort;
  }

  get connections(): number {
    return this.open.size;
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        this.boundPort = (this.server.address() as net.AddressInfo).port;
        resolve(this.boundPort);
      });
    });
  }

  /**
   * Stops accepting now. Connections already handed over belong to grpc-js's shutdown (the
   * listener's own close callback would wait for them); those still short of their preface
   * have nothing in flight and are closed.
   */
  close(): void {
    if (this.server.listening) this.server.close();
    for (const socket of this.waiting) socket.destroy();
  }

  private accept(socket: net.Socket): void {
    if (this.open.size >= this.limits.maxConnections) {
      this.refuse(socket, 'connection_limit');
      return;
    }
    this.open.add(socket);
    this.waiting.add(socket);
    socket.once('close', () => {
      this.open.delete(socket);
      this.waiting.delete(socket);
    });
    socket.on('error', () => undefined); // a reset before hand-over: nothing to answer
    const chunks: Buffer[] = [];
    let received = 0;
    const timer = setTimeout(() => this.refuse(socket, 'preface_timeout'), this.limits.prefaceTimeoutMs);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      const head = chunks.length === 1 ? chunk : Buffer.concat(chunks, received);
      const verdict = classify(head);
      if (verdict === 'wait') return;
      clearTimeout(timer);
      socket.off('data', onData);
      this.waiting.delete(socket);
      if (verdict === 'refuse') {
        this.refuse(socket, 'not_http2');
        return;
      }
      socket.pause();
      socket.unshift(head);
      this.inject(socket);
    };
    socket.on('data', onData);
  }

  private refuse(socket: net.Socket, reason: RefusedConnection): void {
    this.events.onRefused?.(reason);
    this.log.debug({ reason, peer: socket.remoteAddress }, 'connection refused');
    socket.destroy();
  }
}

/** Whether the first bytes are HTTP/2 prior knowledge, a TLS handshake, or neither. */
function classify(head: Buffer): 'accept' | 'wait' | 'refuse' {
  if (head[0] === TLS_HANDSHAKE_RECORD) return 'accept';
  const n = Math.min(head.length, H2_PREFACE.length);
  if (head.compare(H2_PREFACE, 0, n, 0, n) !== 0) return 'refuse';
  return n === H2_PREFACE.length ? 'accept' : 'wait';
}
