import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DecisionEngine } from '../pipeline/engine';
import { toCheckResponse, type CheckResponseMessage } from '../respond/check-response';
import { decodeCheckRequest, encodeCheckResponse } from '../envoy/codec';
import { HealthService } from './health';
import { loadProtos } from './protos';
import { UNDECODABLE, type CheckInput } from '../envoy/check-input';
import { httpListenHost } from './listen-address';
import type { AskerGate } from './askers';
import {
  ConnectionGate,
  DEFAULT_TRANSPORT_LIMITS,
  grpcServerOptions,
  type RefusedConnection,
  type TransportLimits,
} from './limits';
import { LoadShedder } from './shedding';
import { ReceiveBudget } from './receive-budget';

export interface GrpcServerOptions {
  readonly host: string;
  readonly port: number;
  /** Bounds on what one connection and one message may hold (limits.ts). */
  readonly limits?: TransportLimits;
  /** Refuses checks that cannot be answered in time (shedding.ts); none refused when absent. */
  readonly shedder?: LoadShedder;
  readonly onConnectionRefused?: (reason: RefusedConnection) => void;
  /** A stream was reset because the listener's receive budget was spent. */
  readonly onStreamRefused?: () => void;
  /** A reason to refuse every check now (UNAVAILABLE, Envoy fails closed); undefined to decide. */
  readonly unavailable?: () => string | undefined;
  /** Who may ask (TLS client certificates, `--askers`); absent: anyone who reaches the port. */
  readonly askers?: AskerGate;
}

/**
 * The gRPC adapter: decode, decide, encode. Undecodable bytes and internal failures still
 * produce a CheckResponse that denies; an RPC error would be Envoy's `status_on_error`.
 */
export class GrpcServer {
  readonly health = new HealthService();
  private readonly server: grpc.Server;
  private readonly gate: ConnectionGate;
  private readonly shedder: LoadShedder | undefined;
  /** Shared with the HTTP mode, whose bodies are held in the same process. */
  readonly receiveBudget: ReceiveBudget;
  private unwatchReceive: (() => void) | undefined;

  constructor(
    private readonly engine: DecisionEngine,
    private readonly log: Logger,
    private readonly options: GrpcServerOptions,
  ) {
    const limits = options.limits ?? DEFAULT_TRANSPORT_LIMITS;
    this.server = new grpc.Server(grpcServerOptions(limits));
    this.shedder = options.shedder;
    this.receiveBudget = new ReceiveBudget(limits.maxReceiveTotalBytes, options.onStreamRefused);
    const shedder = options.shedder;
    if (
      shedder &&
      limits.pressuredStreams > 0 &&
      limits.maxConcurrentStreams > limits.pressuredStreams
    )
      this.receiveBudget.applyPressure(
        () => shedder.pressured,
        limits.maxConcurrentStreams,
        limits.pressuredStreams,
      );
    const protos = loadProtos();
    this.server.addService(tolerantDecoding(protos.authorization), { Check: this.check });
    this.server.addService(protos.health, this.health.handlers());
    const injector = this.server.createConnectionInjector(
      options.askers?.credentials() ?? grpc.ServerCredentials.createInsecure(),
    );
    this.gate = new ConnectionGate(
      (socket) => injector.injectConnection(socket),
      limits,
      log,
      options.onConnectionRefused ? { onRefused: options.onConnectionRefused } : {},
    );
  }

  get port(): number {
    return this.gate.port;
  }

  /** Open connections, including those not yet past their preface. */
  get connections(): number {
    return this.gate.connections;
  }

  /** Bytes of request messages held now (bounded by the receive budget). */
  get receiveBytesHeld(): number {
    return this.receiveBudget.heldBytes;
  }

  async listen(): Promise<number> {
    const port = await this.gate.listen(httpListenHost(this.options.host), this.options.port);
    this.unwatchReceive = this.receiveBudget.watch(port);
    return port;
  }

  /** Stops accepting, lets checks in flight finish until `deadlineMs`, then cuts the rest. */
  async drain(deadlineMs: number): Promise<void> {
    this.health.setServing(false);
    this.health.close();
    this.gate.close();
    const started = performance.now();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ deadlineMs }, 'drain deadline reached; closing remaining calls');
        this.server.forceShutdown();
        resolve();
      }, deadlineMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    // grpc-js reports a session closed before its socket has written its last frames (the
    // final health status, GOAWAY); exiting then would cut them off.
    await this.gate.drained(Math.max(0, deadlineMs - (performance.now() - started)));
    this.shedder?.close();
    this.unwatchReceive?.();
  }

  private readonly check = (
    call: grpc.ServerUnaryCall<CheckInput, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ): void => {
    // Before the engine: a refused asker changes no state and leaves no decision record.
    if (this.options.askers?.refuse(call))
      return callback({
        code: grpc.status.PERMISSION_DENIED,
        details: 'asker is not authorised to ask about this destination',
      });
    const unavailable = this.options.unavailable?.();
    if (unavailable !== undefined) {
      callback({ code: grpc.status.UNAVAILABLE, details: unavailable });
      return;
    }
    const shedder = this.shedder;
    let done: (() => void) | undefined;
    if (shedder) {
      const deadline = call.getDeadline();
      // A call Envoy has already reset (its timeout passed while the check queued) has no reader.
      const refused = call.cancelled
        ? 'deadline'
        : shedder.refuse(deadline instanceof Date ? deadline.getTime() : deadline);
      if (refused !== undefined) {
        callback(
          refused === 'deadline'
            ? {
                code: grpc.status.DEADLINE_EXCEEDED,
                details: 'deadline passed before the check could be decided',
              }
            : { code: grpc.status.RESOURCE_EXHAUSTED, details: 'overloaded: check refused' },
        );
        return;
      }
      done = shedder.begin();
    }
    this.engine.decide(call.request).then(
      (decision) => {
        done?.();
        callback(null, toCheckResponse(decision));
      },
      (err: Error) => {
        done?.();
        // decide() never rejects by design; if it ever does, fail closed and loudly.
        this.log.error({ err: err.message }, 'check failed');
        callback({ code: grpc.status.INTERNAL, details: 'internal error' });
      },
    );
  };
}

/** The Check method with the hot path's own codec; undecodable bytes become a denial, not an RPC error. */
function tolerantDecoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const check = service['Check']!;
  return {
    ...service,
    Check: {
      ...check,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decodeCheckRequest(bytes);
        } catch {
          return UNDECODABLE;
        }
      },
      responseSerialize: (message: CheckResponseMessage) => encodeCheckResponse(message),
    },
  };
}
