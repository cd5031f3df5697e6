import type { Command } from 'commander';
import { LOG_LEVELS } from '../log';
import { HTTP_DIALECTS, type HttpDialect } from '../server/http-mode';
import { BOUNDS_OPTIONS } from './bounds-flags';
import { DEFAULT_ADMIN_PORT, DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT } from './defaults';
import {
  addOptionTable,
  option,
  type FlagsOf,
  flagName,
  parseValue,
  takesValue,
  type AnyRow,
} from './option-table';
import { collectList, intInRange, listenAddress, parsePort, parsePositiveInt } from './options';

const TLS = { group: 'tls', value: 'F' } as const;

/**
 * Every `serve` flag, once: commander's options, the typed flags (ServeFlags), the
 * environment twins and the flag table of docs/cli.md (`make docs`) all come from here.
 */
export const SERVE_OPTIONS = {
  policies: option({
    flag: '--policies <dir>',
    help: 'policy directory',
    env: 'GATEHOUSE_POLICIES',
    default: './policies',
    docs: {
      value: 'DIR',
      meaning: 'policy directory (`*.yaml`, `*.yml`; `*.test.yaml` skipped)',
    },
  }),
  grpcPort: option({
    flag: '--grpc-port <port>',
    help: 'gRPC port (Authorization/Check and grpc.health.v1)',
    env: 'GATEHOUSE_GRPC_PORT',
    default: DEFAULT_GRPC_PORT,
    parse: parsePort,
    docs: {
      value: 'N',
      meaning: '`envoy.service.auth.v3.Authorization/Check` and `grpc.health.v1.Health`',
    },
  }),
  adminPort: option({
    flag: '--admin-port <port>',
    help: 'admin HTTP port (/healthz, /readyz, /metrics, /v1/policy)',
    env: 'GATEHOUSE_ADMIN_PORT',
    default: DEFAULT_ADMIN_PORT,
    parse: parsePort,
    docs: {
      value: 'N',
      meaning:
        'admin HTTP: `/healthz`, `/readyz`, `/metrics`, `/v1/policy`, `/v1/quarantine`, `/v1/access`',
    },
  }),
  adminTokenFile: option<string>({
    flag: '--admin-token-file <file>',
    help: 'bearer token (first line, at least 16 characters) that admin changes (quarantine release, access renew) need from non-loopback callers',
    env: 'GATEHOUSE_ADMIN_TOKEN_FILE',
    docs: {
      value: 'F',
      meaning:
        'bearer token (first line, ≥ 16 characters) that admin changes need from non-loopback callers',
    },
  }),
  workers: option({
    flag: '--workers <n>',
    help: 'worker processes sharing the gRPC port (default with --redis: one per usable core, CPU quota included; without: 1, since in-process buckets are per process)',
    env: 'GATEHOUSE_WORKERS',
    parse: parsePositiveInt,
    docs: {
      value: 'N',
      default: 'one per core with `--redis`, else `1`',
      meaning:
        'worker processes sharing the gRPC port; `1` runs everything in one process. In-process buckets belong to one process, so without Redis N workers would each admit a full budget: the default is then 1, and more workers log a warning',
    },
  }),
  listenAddress: option({
    flag: '--listen-address <addr>',
    help: 'address to bind: IPv4, IPv6 (`::` listens dual-stack; brackets optional) or a host name',
    env: 'GATEHOUSE_LISTEN_ADDRESS',
    default: '0.0.0.0',
    parse: listenAddress,
    docs: {
      value: 'A',
      meaning:
        'address to bind (gRPC, HTTP mode and admin): IPv4, IPv6 with or without brackets (`::1`, `[::1]`), or a host name; `::` listens dual-stack (IPv6 and IPv4), for IPv6-only and dual-stack clusters',
    },
  }),
  trustDomain: option({
    flag: '--trust-domain <domain>',
    help: 'accept callers from this SPIFFE trust domain (repeatable)',
    env: 'GATEHOUSE_TRUST_DOMAIN',
    parse: collectList,
    docs: {
      value: 'D',
      meaning: 'accepted caller trust domain; repeatable. With none, every caller is a 401',
    },
  }),
  trustXfcc: option<boolean>({
    flag: '--trust-xfcc',
    help: 'read the caller from the nearest x-forwarded-client-cert element when there is no peer principal',
    env: 'GATEHOUSE_TRUST_XFCC',
    docs: {
      default: 'off',
      meaning: 'read the caller from `x-forwarded-client-cert` when there is no peer principal',
    },
  }),
  trustBundle: option({
    flag: '--trust-bundle <domain=file>',
    help: 'X.509 authorities of a trust domain (PEM or SPIFFE bundle JSON), for forwarded client certificates; repeatable',
    env: 'GATEHOUSE_TRUST_BUNDLE',
    parse: collectList,
    docs: {
      value: 'D=FILE|URL',
      meaning:
        'trust bundle of domain D: PEM authorities, or a SPIFFE bundle (JWKS with `x509-svid` and `jwt-svid` keys); a file is re-read when it changes, a URL (bundle endpoint) refreshed on its `spiffe_refresh_hint`, keeping the last good bundle; repeatable for federation',
    },
  }),
  jwtAudience: option<string>({
    flag: '--jwt-audience <id>',
    help: "audience JWT-SVIDs must carry (a policy's `audience` overrides it)",
    env: 'GATEHOUSE_JWT_AUDIENCE',
    docs: {
      value: 'ID',
      meaning: "audience JWT-SVIDs must carry (a policy's or rule's `audience` overrides it)",
    },
  }),
  jwtLeeway: option({
    flag: '--jwt-leeway <seconds>',
    help: 'clock leeway for JWT-SVID exp/nbf',
    env: 'GATEHOUSE_JWT_LEEWAY',
    default: 30,
    parse: intInRange(0, 300, 'seconds'),
    docs: { value: 'S', meaning: 'clock leeway for JWT-SVID `exp`/`nbf`, seconds (0 to 300)' },
  }),
  httpPort: option({
    flag: '--http-port <port>',
    help: `also serve the HTTP authorization mode on this port (conventionally ${DEFAULT_HTTP_PORT}; off unless given)`,
    env: 'GATEHOUSE_HTTP_PORT',
    parse: parsePort,
    docs: {
      value: 'N',
      default: 'off',
      meaning: `also serve the HTTP authorization mode (${DEFAULT_HTTP_PORT} by convention)`,
    },
  }),
  httpDialect: option<HttpDialect>({
    flag: '--http-dialect <proxy>',
    help: 'who calls the HTTP mode: envoy (ext_authz http_service), nginx (auth_request) or traefik (forwardAuth)',
    env: 'GATEHOUSE_HTTP_DIALECT',
    choices: HTTP_DIALECTS,
    default: 'envoy',
    docs: { value: 'P', meaning: 'who calls it: `envoy`, `nginx` or `traefik`' },
  }),
  httpPathPrefix: option<string>({
    flag: '--http-path-prefix <prefix>',
    help: 'Envoy http_service path_prefix to strip',
    env: 'GATEHOUSE_HTTP_PATH_PREFIX',
    docs: { value: 'P', meaning: 'Envoy `http_service.path_prefix` to strip' },
  }),
  httpMaxBody: option({
    flag: '--http-max-body <bytes>',
    help: 'HTTP mode: request bytes read for body contracts; beyond it the body is checked as truncated',
    env: 'GATEHOUSE_HTTP_MAX_BODY',
    default: 1048576,
    parse: intInRange(0, 64 * 1048576, 'bytes'),
    docs: {
      value: 'N',
      meaning:
        "HTTP mode: body bytes read for body contracts (Envoy's `with_request_body`); a longer body is checked as truncated",
    },
  }),
  httpClientCertHeader: option<string>({
    flag: '--http-client-cert-header <name>',
    help: 'header in which the proxy forwards the client certificate (URL-encoded PEM), verified against --trust-bundle',
    env: 'GATEHOUSE_HTTP_CLIENT_CERT_HEADER',
    docs: { value: 'H', meaning: 'header carrying the client certificate (URL-encoded PEM)' },
  }),
  tlsCert: option<string>({
    flag: '--tls-cert <file>',
    help: 'serve the gRPC port over TLS with this certificate (PEM); needs --tls-key and --client-ca',
    env: 'GATEHOUSE_TLS_CERT',
    docs: TLS,
  }),
  tlsKey: option<string>({
    flag: '--tls-key <file>',
    help: 'private key of --tls-cert (PEM)',
    env: 'GATEHOUSE_TLS_KEY',
    docs: TLS,
  }),
  clientCa: option<string>({
    flag: '--client-ca <file>',
    help: "CA certificates (PEM) that askers' client certificates must chain to; client certificates are required",
    env: 'GATEHOUSE_CLIENT_CA',
    docs: TLS,
  }),
  askers: option({
    flag: '--askers <pattern>',
    help: 'SPIFFE ID patterns of the proxies that may ask; each asks only about requests to itself (repeatable)',
    env: 'GATEHOUSE_ASKERS',
    parse: collectList,
    docs: {
      value: 'P',
      default: 'any authenticated asker',
      meaning:
        'SPIFFE ID patterns of the proxies that may ask; each asks only about requests to itself (asker = `destination.principal`)',
    },
  }),
  gatewayAskers: option({
    flag: '--gateway-askers <pattern>',
    help: 'SPIFFE ID patterns of askers that may ask about any destination, such as ingress gateways (repeatable)',
    env: 'GATEHOUSE_GATEWAY_ASKERS',
    parse: collectList,
    docs: {
      value: 'P',
      meaning:
        'askers that may ask about any destination (ingress gateways; the only askers the HTTP mode accepts)',
    },
  }),
  askerFromXfcc: option<boolean>({
    flag: '--asker-from-xfcc',
    help: "read the asker from the x-forwarded-client-cert metadata of Gatehouse's own sidecar (only where nothing else can reach the port)",
    env: 'GATEHOUSE_ASKER_FROM_XFCC',
    docs: {
      default: 'off',
      meaning:
        "read the asker from the `x-forwarded-client-cert` metadata Gatehouse's own Istio sidecar sets (exactly one element); only where nothing but that sidecar reaches the port",
    },
  }),
  auditLog: option<string>({
    flag: '--audit-log <file>',
    help: 'audit records to this file (default: stdout)',
    env: 'GATEHOUSE_AUDIT_LOG',
    docs: { value: 'FILE', default: 'stdout', meaning: 'audit records (JSON lines)' },
  }),
  auditKey: option<string>({
    flag: '--audit-key <file>',
    help: 'secret (at least 32 bytes) to HMAC every audit record with, so only its holder can rewrite the log; verify with `audit verify --key`',
    env: 'GATEHOUSE_AUDIT_KEY',
    docs: {
      value: 'FILE',
      meaning:
        'a secret of at least 32 bytes: the audit chain uses HMAC-SHA256 with it, so nobody without the key can rewrite records (verify with `audit verify --key FILE`)',
    },
  }),
  logLevel: option<(typeof LOG_LEVELS)[number]>({
    flag: '--log-level <level>',
    help: 'operational log level (stderr)',
    env: 'GATEHOUSE_LOG_LEVEL',
    choices: LOG_LEVELS,
    default: 'info',
    docs: { value: 'L', meaning: 'operational log, on stderr' },
  }),
  redis: option<string>({
    flag: '--redis <url>',
    help: 'share token buckets through Redis (redis://host:port); default: in-process',
    env: 'GATEHOUSE_REDIS',
    docs: {
      value: 'URL',
      meaning:
        'share token buckets through Redis (`redis://[user:pass@]host:port`, `rediss://` for TLS)',
    },
  }),
  redisCluster: option({
    flag: '--redis-cluster <urls>',
    help: 'share token buckets through Redis Cluster (comma-separated seed URLs)',
    env: 'GATEHOUSE_REDIS_CLUSTER',
    parse: collectList,
    docs: {
      value: 'URL,URL…',
      meaning: 'share token buckets through Redis Cluster (seed nodes)',
    },
  }),
  redisTimeout: option({
    flag: '--redis-timeout <ms>',
    help: 'time budget of the Redis work of one check',
    env: 'GATEHOUSE_REDIS_TIMEOUT',
    default: 50,
    parse: parsePositiveInt,
    docs: { value: 'MS', meaning: "time budget of one check's Redis work" },
  }),
  watch: option({
    flag: '--no-watch',
    help: 'do not reload when files in the policy directory change (SIGHUP still reloads)',
    default: true,
    docs: {
      default: 'watching',
      meaning: 'do not reload when files in the policy directory change',
    },
  }),
  bundle: option<string>({
    flag: '--bundle <url|file>',
    help: 'serve a signed policy bundle (see `gatehouse bundle build`) instead of --policies, polling it for new revisions',
    env: 'GATEHOUSE_BUNDLE',
    docs: {
      value: 'URL|FILE',
      meaning: 'serve a signed bundle instead of `--policies`, polling it',
    },
  }),
  bundleKey: option<string>({
    flag: '--bundle-key <file>',
    help: 'public key (PEM, Ed25519 or ECDSA) that bundles must be signed with',
    env: 'GATEHOUSE_BUNDLE_KEY',
    docs: { value: 'FILE', meaning: 'public key (PEM) bundles must be signed with' },
  }),
  bundleState: option<string>({
    flag: '--bundle-state <file>',
    help: 'where the highest activated bundle revision is kept, so a restart never goes back to an older signed bundle (put it on a persistent volume)',
    env: 'GATEHOUSE_BUNDLE_STATE',
    docs: {
      value: 'FILE',
      meaning: 'keeps the highest activated revision across restarts (refuses rollbacks)',
    },
  }),
  bundlePoll: option({
    flag: '--bundle-poll <seconds>',
    help: 'how often to poll the bundle',
    env: 'GATEHOUSE_BUNDLE_POLL',
    default: 30,
    parse: parsePositiveInt,
    docs: { value: 'S', meaning: 'bundle poll interval, seconds' },
  }),
  drainTimeout: option({
    flag: '--drain-timeout <ms>',
    help: 'on SIGTERM, how long checks in flight may take',
    env: 'GATEHOUSE_DRAIN_TIMEOUT',
    default: 10000,
    parse: parsePositiveInt,
    docs: { value: 'MS', meaning: 'on SIGTERM, how long checks in flight may take' },
  }),
  shutdownWait: option({
    flag: '--shutdown-wait <ms>',
    help: 'on SIGTERM, report NOT_SERVING but keep answering checks this long before draining (let health checks move traffic away)',
    env: 'GATEHOUSE_SHUTDOWN_WAIT',
    default: 0,
    parse: intInRange(0, 600_000, 'milliseconds'),
    docs: {
      value: 'MS',
      meaning:
        "on SIGTERM, report NOT_SERVING (gRPC health, `/readyz`) but keep answering checks this long before draining, so Envoy's active health checks move traffic away first (as OPA's `--shutdown-wait-period`); on Kubernetes the `preStop` sleep in `istio/gatehouse` does the same",
    },
  }),
  ...BOUNDS_OPTIONS,
};

/** The `serve` flags as commander parses them (and as workers receive them from the primary). */
export type ServeFlags = FlagsOf<typeof SERVE_OPTIONS>;

export function addServeOptions(command: Command): Command {
  return addOptionTable(command, SERVE_OPTIONS);
}

/**
 * `value` as ServeFlags, or what is wrong with it: every row's value checked again (a number
 * or a listen address through its parser, a choice against the choices), no key outside the
 * table, every row with a default present. For flags that crossed a process boundary.
 */
export function serveFlagsProblem(value: unknown): ServeFlags | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'not an object of flags';
  const rows: Record<string, AnyRow> = SERVE_OPTIONS;
  for (const [key, v] of Object.entries(value)) {
    const row = Object.hasOwn(rows, key) ? rows[key] : undefined;
    if (!row) return `${key.slice(0, 64)} is not a serve flag`;
    const problem = valueProblem(row, v);
    if (problem) return `${flagName(row)} ${problem}`;
  }
  for (const [key, row] of Object.entries(rows))
    if (row.default !== undefined && (value as Record<string, unknown>)[key] === undefined)
      return `${flagName(row)} is missing`;
  return value as ServeFlags;
}

function valueProblem(row: AnyRow, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (!takesValue(row)) return typeof v === 'boolean' ? undefined : 'must be true or false';
  if (row.parse === collectList)
    return Array.isArray(v) && v.every((s) => typeof s === 'string')
      ? undefined
      : 'must be a list of strings';
  if (typeof v !== 'string' && typeof v !== 'number') return 'must be a string or a number';
  if (row.choices && !row.choices.includes(String(v)))
    return `must be one of ${row.choices.join(', ')}`;
  if (!row.parse) return typeof v === 'string' ? undefined : 'must be a string';
  try {
    return parseValue(row, String(v)) === v ? undefined : 'is not a parsed value';
  } catch (err) {
    return (err as Error).message;
  }
}
