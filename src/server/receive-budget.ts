import * as diagnostics from 'node:diagnostics_channel';
import * as http2 from 'node:http2';

/**
 * Bytes of request messages held at once by one process's listeners, across all their
 * connections and streams (the HTTP mode's bodies included). Each limit on its own is reasonable (--grpc-max-connections 1024, 8 streams
 * each, --grpc-max-receive about 1 MiB), but their product is 8 GiB: a peer that opens many
 * connections and sends large messages slowly would make the process hold all of it.
 *
 * A stream is charged every byte grpc-js takes from it (the partial message in its decoder,
 * then the decoded request while the check is decided) until the stream closes. A stream
 * whose next bytes would take the total over the budget is reset with REFUSED_STREAM: its
 * check was never decided, so the proxy may retry it, or fails closed as configured. Streams
 * grpc-js has not read stay inside HTTP/2 flow control (64 KiB per connection), which is
 * the connection cap's share, not this budget's.
 */
export class ReceiveBudget {
  private held = 0;
  /** Streams per connection to ask for while `pressured()` says so; undefined: never ask. */
  private pressure:
    | { readonly pressured: () => boolean; readonly normal: number; readonly reduced: number }
    | undefined;
  /** The SETTINGS_MAX_CONCURRENT_STREAMS last sent to a session, where it is not the normal one. */
  private readonly reducedSessions = new WeakSet<http2.Http2Session>();

  /**
   * While `pressured()`, each session that opens a stream is sent SETTINGS with `reduced`
   * concurrent streams, and `normal` again once the pressure is gone: back-pressure the client
   * obeys, which refusing streams after their bytes are read is not.
   */
  applyPressure(pressured: () => boolean, normal: number, reduced: number): void {
    this.pressure = { pressured, normal, reduced };
  }

  private adjustStreams(session: http2.Http2Session | undefined): void {
    const pressure = this.pressure;
    if (pressure === undefined || session === undefined || session.destroyed) return;
    const reduce = pressure.pressured();
    if (reduce === this.reducedSessions.has(session)) return;
    try {
      session.settings({ maxConcurrentStreams: reduce ? pressure.reduced : pressure.normal });
    } catch {
      return; // a session closing meanwhile keeps what it has
    }
    if (reduce) this.reducedSessions.add(session);
    else this.reducedSessions.delete(session);
  }

  constructor(
    readonly maxBytes: number,
    private readonly onRefused: () => void = () => undefined,
  ) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0)
      throw new RangeError(`receive budget must be a positive integer, not ${maxBytes}`);
  }

  /** Bytes of request messages held now. */
  get heldBytes(): number {
    return this.held;
  }

  /** Charges the streams that arrive on `port` (this process's gRPC listener) to this budget. */
  watch(port: number): () => void {
    if (!subscribed) {
      diagnostics.subscribe('http2.server.stream.created', onStreamCreated);
      subscribed = true;
    }
    budgets.set(port, this);
    return () => {
      if (budgets.get(port) === this) budgets.delete(port);
    };
  }

  /** Takes `bytes` from the budget; false (and counted as refused) when they do not fit. */
  reserve(bytes: number): boolean {
    if (this.held + bytes > this.maxBytes) {
      this.onRefused();
      return false;
    }
    this.held += bytes;
    return true;
  }

  release(bytes: number): void {
    this.held -= bytes;
  }

  admit(stream: http2.ServerHttp2Stream): void {
    this.adjustStreams(stream.session);
    if (this.held >= this.maxBytes) {
      this.onRefused();
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    let charged = 0;
    stream.on('data', (chunk: Buffer) => {
      if (charged < 0) return;
      if (!this.reserve(chunk.length)) {
        this.release(charged);
        charged = -1;
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      charged += chunk.length;
    });
    stream.once('close', () => {
      if (charged > 0) this.release(charged);
      charged = -1;
    });
  }
}

/** Listening port -> its budget. One per gRPC listener; more than one only in tests. */
const budgets = new Map<number, ReceiveBudget>();
let subscribed = false;

function onStreamCreated(message: unknown): void {
  const stream = (message as { stream: http2.ServerHttp2Stream }).stream;
  const port = stream.session?.socket?.localPort;
  if (port === undefined) return;
  budgets.get(port)?.admit(stream);
}
