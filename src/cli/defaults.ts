/**
 * Gatehouse's default ports. `serve` uses them as option defaults, and the deployment
 * configurations (envoy/, istio/, k6/, Dockerfile) are tested against them, so a changed
 * default cannot silently leave a proxy pointing at the wrong port.
 */

/** gRPC: envoy.service.auth.v3.Authorization/Check and grpc.health.v1 (`--grpc-port`). */
export const DEFAULT_GRPC_PORT = 9191;

/** HTTP authorization mode (`--http-port`). Off unless the flag is given; this is the conventional port. */
export const DEFAULT_HTTP_PORT = 9192;

/** Admin HTTP: /healthz, /readyz, /metrics, /v1/policy (`--admin-port`). */
export const DEFAULT_ADMIN_PORT = 9193;
