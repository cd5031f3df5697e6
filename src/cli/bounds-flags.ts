import type { GatehouseOptions } from '../app';
import { DEFAULT_BUCKET_MAX_IDLE_MS, DEFAULT_MAX_BUCKETS } from '../ratelimit/memory-store';
import { DEFAULT_TRANSPORT_LIMITS, HEADERS_MARGIN_BYTES } from '../server/limits';
import { DEFAULT_SHEDDING } from '../server/shedding';
import { option, type FlagsOf } from './option-table';
import { intInRange } from './options';

const T = DEFAULT_TRANSPORT_LIMITS;
const BOUNDS = { group: 'bounds' } as const;

/**
 * `serve` flags that bound what callers can make a replica hold or do (docs/operations.md
 * "Bounds"): rows of the serve option table (serve-options.ts).
 */
export const BOUNDS_OPTIONS = {
  auditRequired: option<boolean>({
    flag: '--audit-required',
    help: 'while audit records cannot be written, report not ready and refuse checks (fail-closed) instead of deciding them unaudited',
    env: 'GATEHOUSE_AUDIT_REQUIRED',
    docs: {
      default: 'off',
      meaning:
        'while audit records cannot be written, report not ready and refuse checks (see "Operations")',
    },
  }),
  maxBuckets: option({
    flag: '--max-buckets <n>',
    help: 'in-process token buckets held at most (about 380 bytes of RSS each); past it the least recently used is dropped',
    env: 'GATEHOUSE_MAX_BUCKETS',
    default: DEFAULT_MAX_BUCKETS,
    parse: intInRange(1, 50_000_000, 'buckets'),
    docs: BOUNDS,
  }),
  bucketMaxIdle: option({
    flag: '--bucket-max-idle <seconds>',
    help: 'drop an in-process bucket unused this long even if it has not refilled',
    env: 'GATEHOUSE_BUCKET_MAX_IDLE',
    default: DEFAULT_BUCKET_MAX_IDLE_MS / 1000,
    parse: intInRange(1, 30 * 86_400, 'seconds'),
    docs: BOUNDS,
  }),
  grpcMaxReceive: option({
    flag: '--grpc-max-receive <bytes>',
    help: `largest CheckRequest accepted (default: --http-max-body + ${HEADERS_MARGIN_BYTES / 1024} KiB for headers)`,
    env: 'GATEHOUSE_GRPC_MAX_RECEIVE',
    parse: intInRange(4096, 64 * 1048576, 'bytes'),
    docs: BOUNDS,
  }),
  maxReceiveBytes: option({
    flag: '--max-receive-bytes <bytes>',
    help: 'bytes of request messages held at once across all gRPC streams and HTTP-mode bodies; a check past it is refused (REFUSED_STREAM, HTTP: 503)',
    env: 'GATEHOUSE_MAX_RECEIVE_BYTES',
    default: T.maxReceiveTotalBytes,
    parse: intInRange(1048576, 4096 * 1048576, 'bytes'),
    docs: BOUNDS,
  }),
  grpcMaxStreams: option({
    flag: '--grpc-max-streams <n>',
    help: 'concurrent streams per gRPC connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)',
    env: 'GATEHOUSE_GRPC_MAX_STREAMS',
    default: T.maxConcurrentStreams,
    parse: intInRange(1, 100_000, 'streams'),
    docs: BOUNDS,
  }),
  grpcPressuredStreams: option({
    flag: '--grpc-pressured-streams <n>',
    help: 'concurrent streams asked of each gRPC connection (HTTP/2 SETTINGS) while the event loop is behind, so excess checks wait in the proxy under its timeout (0: never lowered)',
    env: 'GATEHOUSE_GRPC_PRESSURED_STREAMS',
    default: T.pressuredStreams,
    parse: intInRange(0, 100_000, 'streams'),
    docs: BOUNDS,
  }),
  grpcMaxConnections: option({
    flag: '--grpc-max-connections <n>',
    help: 'open gRPC connections per process; more are closed on accept',
    env: 'GATEHOUSE_GRPC_MAX_CONNECTIONS',
    default: T.maxConnections,
    parse: intInRange(1, 1_000_000, 'connections'),
    docs: BOUNDS,
  }),
  grpcPrefaceTimeout: option({
    flag: '--grpc-preface-timeout <ms>',
    help: 'close a connection that has not sent the HTTP/2 preface (or TLS ClientHello) within this',
    env: 'GATEHOUSE_GRPC_PREFACE_TIMEOUT',
    default: T.prefaceTimeoutMs,
    parse: intInRange(100, 600_000, 'milliseconds'),
    docs: BOUNDS,
  }),
  grpcIdleTimeout: option({
    flag: '--grpc-idle-timeout <ms>',
    help: 'close (GOAWAY) a gRPC connection with no stream for this long',
    env: 'GATEHOUSE_GRPC_IDLE_TIMEOUT',
    default: T.idleTimeoutMs,
    parse: intInRange(1000, 86_400_000, 'milliseconds'),
    docs: BOUNDS,
  }),
  grpcKeepalive: option({
    flag: '--grpc-keepalive <ms>',
    help: 'ping each gRPC connection this often',
    env: 'GATEHOUSE_GRPC_KEEPALIVE',
    default: T.keepaliveTimeMs,
    parse: intInRange(1000, 86_400_000, 'milliseconds'),
    docs: BOUNDS,
  }),
  grpcKeepaliveTimeout: option({
    flag: '--grpc-keepalive-timeout <ms>',
    help: 'close a connection whose ping is not answered within this',
    env: 'GATEHOUSE_GRPC_KEEPALIVE_TIMEOUT',
    default: T.keepaliveTimeoutMs,
    parse: intInRange(100, 600_000, 'milliseconds'),
    docs: BOUNDS,
  }),
  maxInFlight: option({
    flag: '--max-in-flight <n>',
    help: 'checks decided at once per process (gRPC and HTTP mode); more are refused with RESOURCE_EXHAUSTED (HTTP: 503) (0: unbounded)',
    env: 'GATEHOUSE_MAX_IN_FLIGHT',
    default: DEFAULT_SHEDDING.maxInFlight,
    parse: intInRange(0, 1_000_000, 'checks'),
    docs: BOUNDS,
  }),
  shedLag: option({
    flag: '--shed-lag <ms>',
    help: 'refuse new checks with RESOURCE_EXHAUSTED (HTTP: 503) while the event loop lags more than this (0: never)',
    env: 'GATEHOUSE_SHED_LAG',
    default: DEFAULT_SHEDDING.maxEventLoopLagMs,
    parse: intInRange(0, 60_000, 'milliseconds'),
    docs: BOUNDS,
  }),
};

export const BOUNDS_DOCS_GROUP = {
  env: '`GATEHOUSE_…`',
  default: 'see "Bounds"',
  meaning:
    'what callers can make a replica hold or do: buckets, message size, streams, connections, idle time, checks in flight, overload',
};

export type BoundsFlags = FlagsOf<typeof BOUNDS_OPTIONS> & { httpMaxBody: number };

export function boundsOptions(
  flags: BoundsFlags,
): Pick<GatehouseOptions, 'transport' | 'shedding' | 'buckets' | 'auditRequired'> {
  return {
    auditRequired: flags.auditRequired === true,
    buckets: { maxBuckets: flags.maxBuckets, maxIdleMs: flags.bucketMaxIdle * 1000 },
    transport: {
      maxReceiveBytes: flags.grpcMaxReceive ?? flags.httpMaxBody + HEADERS_MARGIN_BYTES,
      maxReceiveTotalBytes: flags.maxReceiveBytes,
      maxConcurrentStreams: flags.grpcMaxStreams,
      pressuredStreams: flags.grpcPressuredStreams,
      maxConnections: flags.grpcMaxConnections,
      prefaceTimeoutMs: flags.grpcPrefaceTimeout,
      idleTimeoutMs: flags.grpcIdleTimeout,
      keepaliveTimeMs: flags.grpcKeepalive,
      keepaliveTimeoutMs: flags.grpcKeepaliveTimeout,
    },
    shedding: { maxInFlight: flags.maxInFlight, maxEventLoopLagMs: flags.shedLag },
  };
}
