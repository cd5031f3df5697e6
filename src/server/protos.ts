import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_ROOT } from '../envoy/proto-root';

/**
 * Decode options for the hot path: no defaults are filled in (absent fields stay
 * undefined and the normaliser treats them as missing), int64 as strings, enums as numbers.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: Number,
  defaults: false,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

export interface LoadedProtos {
  authorization: grpc.ServiceDefinition;
  health: grpc.ServiceDefinition;
  /** Client constructors for tests and tools. */
  AuthorizationClient: grpc.ServiceClientConstructor;
  HealthClient: grpc.ServiceClientConstructor;
}

let cached: LoadedProtos | undefined;

export function loadProtos(): LoadedProtos {
  if (cached) return cached;
  const definition = protoLoader.loadSync(
    ['envoy/service/auth/v3/external_auth.proto', 'grpc/health/v1/health.proto'],
    LOADER_OPTIONS,
  );
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const AuthorizationClient = loaded.envoy.service.auth.v3.Authorization;
  const HealthClient = loaded.grpc.health.v1.Health;
  cached = {
    authorization: AuthorizationClient.service,
    health: HealthClient.service,
    AuthorizationClient,
    HealthClient,
  };
  return cached;
}
