import * as grpc from '@grpc/grpc-js';

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
export const SERVING = 1;
export const NOT_SERVING = 2;
export const SERVICE_UNKNOWN = 3;

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';

type Watcher = grpc.ServerWritableStream<{ service?: string }, { status: number }>;

/** grpc.health.v1.Health for '' (the whole server) and the Authorization service. */
export class HealthService {
  private status = SERVING;
  private readonly watchers = new Set<Watcher>();

  setServing(serving: boolean): void {
    const status = serving ? SERVING : NOT_SERVING;
    if (status === this.status) return; // Watch streams hear of changes only
    this.status = status;
    for (const call of this.watchers) this.send(call);
  }

  private statusOf(service: string | undefined): number {
    return !service || service === AUTHORIZATION_SERVICE ? this.status : SERVICE_UNKNOWN;
  }

  private send(call: Watcher): void {
    call.write({ status: this.statusOf(call.request.service) });
  }

  handlers(): grpc.UntypedServiceImplementation {
    return {
      Check: (
        call: grpc.ServerUnaryCall<{ service?: string }, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        const status = this.statusOf(call.request.service);
        if (status === SERVICE_UNKNOWN)
          callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
        else callback(null, { status });
      },
      Watch: (call: Watcher) => {
        this.watchers.add(call);
        this.send(call);
        call.on('cancelled', () => this.watchers.delete(call));
        call.on('close', () => this.watchers.delete(call));
      },
    };
  }

  /** Ends open Watch streams so shutdown is not held up by them. */
  close(): void {
    for (const call of this.watchers) call.end();
    this.watchers.clear();
  }
}
