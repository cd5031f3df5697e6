import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../src/server/protos';
import type { CheckResponseMessage } from '../../src/respond/check-response';

export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

export interface CheckClient {
  check(request: unknown, deadlineMs?: number): Promise<CheckResponseMessage>;
  /** Sends raw bytes as the Check request body, as a hostile client could. */
  checkRaw(bytes: Buffer): Promise<CheckResponseMessage>;
  health(service?: string): Promise<{ status: number }>;
  close(): void;
}

/** A real grpc-js client over loopback, using the project's own protos. */
/** `ownConnection`: a TCP connection of its own (grpc-js otherwise shares one per address). */
/** `host`: the address to dial (IPv6 literals in brackets); loopback IPv4 unless given. */
export function checkClient(
  port: number,
  options: { ownConnection?: boolean; host?: string } = {},
): CheckClient {
  const protos = loadProtos();
  const address = `${options.host ?? '127.0.0.1'}:${port}`;
  const creds = grpc.credentials.createInsecure();
  const auth = new protos.AuthorizationClient(
    address,
    creds,
    options.ownConnection ? { 'grpc.use_local_subchannel_pool': 1 } : {},
  ) as grpc.Client & Record<string, Function>;
  const health = new protos.HealthClient(address, creds) as grpc.Client & Record<string, Function>;
  const checkDef = protos.authorization['Check']!;
  const unary = <T>(
    fn: (cb: (err: grpc.ServiceError | null, res?: T) => void) => void,
  ): Promise<T> =>
    new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res as T))));
  return {
    check: (request, deadlineMs = 5000) =>
      unary<CheckResponseMessage>((cb) =>
        auth['Check']!(request, { deadline: Date.now() + deadlineMs }, cb),
      ),
    checkRaw: (bytes) =>
      unary<CheckResponseMessage>((cb) =>
        auth.makeUnaryRequest(
          CHECK_PATH,
          (b: Buffer) => b,
          (b: Buffer) => checkDef.responseDeserialize(b) as CheckResponseMessage,
          bytes,
          cb,
        ),
      ),
    health: (service = '') => unary<{ status: number }>((cb) => health['Check']!({ service }, cb)),
    close: () => {
      auth.close();
      health.close();
    },
  };
}

export function headerMap(
  options: { header: { key: string; value: string } }[] | undefined,
): Record<string, string> {
  return Object.fromEntries((options ?? []).map((h) => [h.header.key, h.header.value]));
}
