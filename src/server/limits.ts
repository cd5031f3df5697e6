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
  /**
   * Bytes of request messages held at once across every connection and stream of the
   * listener (receive-budget.ts); a stream that would take the total past it is refused.
   */
  readonly maxReceiveTotalBytes: number;
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS asked of a connection while the event loop is behind
   * (LoadShedder.pressured); 0: never lowered.
   */
  readonly pressuredStreams: number;
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

/**
 * The share of a 256 Mi pod left for messages being received once the baseline (about 110 MiB)
 * and full bucket table (about 73 MiB) are counted: with the Deployment's heap cap, 24 MiB of
 * held messages grew RSS by about 44 MiB under attack (refused streams' bytes wait for the
 * collector). About 20 of the largest messages at once, thousands of ordinary checks.
 */
export const DEFAULT_MAX_RECEIVE_TOTAL_BYTES = 24 * 1024 * 1024;

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  maxReceiveBytes: DEFAULT_MAX_BODY_BYTES + HEADERS_MARGIN_BYTES,
  maxReceiveTotalBytes: DEFAULT_MAX_RECEIVE_TOTAL_BYTES,
  // Streams past this wait in the proxy, where its timeout applies, not in front of our handler,
  // where nothing can shed them: docs/performance.md "Overload".
  maxConcurrentStreams: 8,
  // At twice the saturating load, 1 answered 86–95 of 98 probes within Envoy's 250 ms against
  // about 60 for 8 (docs/performance.md "Where the overload queue is").
  pressuredStreams: 1,
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

/** The HTTP/2 client preface is 24 bytes; a TLS ClientHello is longer. */
const PREFACE_BYTES = 24;

export type RefusedConnection = 'connection_limit' | 'preface_timeout';

export interface ConnectionGateEvents {
  readonly onRefused?: (reason: RefusedConnection) => void;
}

/**
 * The listening socket in front of grpc-js. grpc-js accepts every connection and waits
 * forever for its preface; this gate owns the TCP listener, closes connections past the cap
 * on accept, and closes a connection that has not sent the 24 bytes of the HTTP/2 preface (or
 * a TLS ClientHello) within `prefaceTimeoutMs`. It never reads the connection itself: grpc-js
 * gets it untouched at once, and the gate only looks at how many bytes HTTP/2 has read.
 * Bytes that are not HTTP/2 are refused by HTTP/2 itself (GOAWAY, close).
 */
export class ConnectionGate {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private boundPort = 0;
  private onEmpty: (() => void) | undefined;

  constructor(
    private readonly inject: (socket: net.Socket) => void,
    private readonly limits: TransportLimits,
    private readonly log: Logger,
    private readonly events: ConnectionGateEvents = {},
  ) {
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
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
   * Stops accepting now. Connections belong to grpc-js's shutdown (the listener's own close
   * callback would wait for them), except those that never sent a byte: nothing can be in
   * flight on them, and they would hold the process until the drain deadline.
   */
  close(): void {
    if (this.server.listening) this.server.close();
    for (const socket of this.open) if (socket.bytesRead === 0) socket.destroy();
  }

  /** Resolves once every connection has closed (its last bytes written), or after `ms`. */
  drained(ms: number): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.onEmpty = done;
    });
  }

  private accept(socket: net.Socket): void {
    if (this.open.size >= this.limits.maxConnections) {
      this.refuse(socket, 'connection_limit');
      return;
    }
    this.open.add(socket);
    const timer = setTimeout(() => {
      if (socket.bytesRead < PREFACE_BYTES) this.refuse(socket, 'preface_timeout');
    }, this.limits.prefaceTimeoutMs);
    timer.unref();
    socket.once('close', () => {
      clearTimeout(timer);
      this.open.delete(socket);
      if (this.open.size === 0) this.onEmpty?.();
    });
    this.inject(socket);
  }

  private refuse(socket: net.Socket, reason: RefusedConnection): void {
    this.events.onRefused?.(reason);
    this.log.debug({ reason, peer: socket.remoteAddress }, 'connection refused');
    socket.on('error', () => undefined);
    socket.destroy();
  }
}
