import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DecisionEngine } from '../pipeline/engine';
import { toCheckResponse, type CheckResponseMessage } from '../respond/check-response';
import { decodeCheckRequest, encodeCheckResponse } from './codec';
import { HealthService } from './health';
import { loadProtos } from './protos';
import { UNDECODABLE } from '../request/normalize';
import { grpcBindTarget } from './listen-address';
import type { AskerGate } from './askers';


export interface GrpcServerOptions {
  readonly host: string;
  readonly port: number;
  /** Bound on messages; Envoy may forward bodies, so this is larger than grpc-js's 4 MiB default. */
  readonly maxMessageBytes?: number;
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
  private boundPort = 0;

  constructor(
    private readonly engine: DecisionEngine,
    private readonly log: Logger,
    private readonly options: GrpcServerOptions,
  ) {
    const max = options.maxMessageBytes ?? 8 * 1024 * 1024;
    this.server = new grpc.Server({ 'grpc.max_receive_message_length': max, 'grpc.max_send_message_length': max });
    const protos = loadProtos();
    this.server.addService(tolerantDecoding(protos.authorization), { Check: this.check });
    this.server.addService(protos.health, this.health.handlers());
  }

  get port(): number {
    return this.boundPort;
  }

  async listen(): Promise<number> {
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(grpcBindTarget(this.options.host, this.options.port), this.options.askers?.credentials() ?? grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      );
    });
    return this.boundPort;
  }

  /** Stops accepting, lets checks in flight finish until `deadlineMs`, then cuts the rest. */
  async drain(deadlineMs: number): Promise<void> {
    this.health.setServing(false);
    this.health.close();
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
  }

  private readonly check = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>): void => {
    // Before the engine: a refused asker changes no state and leaves no decision record.
    if (this.options.askers?.refuse(call)) return callback({ code: grpc.status.PERMISSION_DENIED, details: 'asker is not authorised to ask about this destination' });
    this.engine.decide(call.request).then(
      (decision) => callback(null, toCheckResponse(decision)),
      (err: Error) => {
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
