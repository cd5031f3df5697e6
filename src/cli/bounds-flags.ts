import { Option, type Command } from 'commander';
import type { GatehouseOptions } from '../app';
import { DEFAULT_BUCKET_MAX_IDLE_MS, DEFAULT_MAX_BUCKETS } from '../ratelimit/memory-store';
import { DEFAULT_TRANSPORT_LIMITS, HEADERS_MARGIN_BYTES } from '../server/limits';
import { DEFAULT_SHEDDING } from '../server/shedding';
import { intInRange } from './options';

/** `serve` flags that bound what callers can make a replica hold or do (docs/operations.md "Bounds"). */
export interface BoundsFlags {
  maxBuckets: number;
  bucketMaxIdle: number;
  grpcMaxReceive?: number;
  maxReceiveBytes: number;
  httpMaxBody: number;
  grpcMaxStreams: number;
  grpcMaxConnections: number;
  grpcPrefaceTimeout: number;
  grpcIdleTimeout: number;
  grpcKeepalive: number;
  grpcKeepaliveTimeout: number;
  maxInFlight: number;
  shedLag: number;
  auditRequired?: boolean;
}

const T = DEFAULT_TRANSPORT_LIMITS;

export function withBoundsOptions(command: Command): Command {
  const option = (
    flags: string,
    help: string,
    env: string,
    fallback: number | undefined,
    parse: (v: string) => number,
  ): Option => {
    const o = new Option(flags, help).argParser(parse).env(env);
    return fallback === undefined ? o : o.default(fallback);
  };
  return command
    .addOption(
      option(
        '--max-buckets <n>',
        'in-process token buckets held at most (about 380 bytes of RSS each); past it the least recently used is dropped',
        'GATEHOUSE_MAX_BUCKETS',
        DEFAULT_MAX_BUCKETS,
        intInRange(1, 50_000_000, 'buckets'),
      ),
    )
    .addOption(
      option(
        '--bucket-max-idle <seconds>',
        'drop an in-process bucket unused this long even if it has not refilled',
        'GATEHOUSE_BUCKET_MAX_IDLE',
        DEFAULT_BUCKET_MAX_IDLE_MS / 1000,
        intInRange(1, 30 * 86_400, 'seconds'),
      ),
    )
    .addOption(
      option(
        '--grpc-max-receive <bytes>',
        `largest CheckRequest accepted (default: --http-max-body + ${HEADERS_MARGIN_BYTES / 1024} KiB for headers)`,
        'GATEHOUSE_GRPC_MAX_RECEIVE',
        undefined,
        intInRange(4096, 64 * 1048576, 'bytes'),
      ),
    )
    .addOption(
      option(
        '--max-receive-bytes <bytes>',
        'bytes of request messages held at once across all gRPC streams and HTTP-mode bodies; a check past it is refused (REFUSED_STREAM, HTTP: 503)',
        'GATEHOUSE_MAX_RECEIVE_BYTES',
        T.maxReceiveTotalBytes,
        intInRange(1048576, 4096 * 1048576, 'bytes'),
      ),
    )
    .addOption(
      option(
        '--grpc-max-streams <n>',
        'concurrent streams per gRPC connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)',
        'GATEHOUSE_GRPC_MAX_STREAMS',
        T.maxConcurrentStreams,
        intInRange(1, 100_000, 'streams'),
      ),
    )
    .addOption(
      option(
        '--grpc-max-connections <n>',
        'open gRPC connections per process; more are closed on accept',
        'GATEHOUSE_GRPC_MAX_CONNECTIONS',
        T.maxConnections,
        intInRange(1, 1_000_000, 'connections'),
      ),
    )
    .addOption(
      option(
        '--grpc-preface-timeout <ms>',
        'close a connection that has not sent the HTTP/2 preface (or TLS ClientHello) within this',
        'GATEHOUSE_GRPC_PREFACE_TIMEOUT',
        T.prefaceTimeoutMs,
        intInRange(100, 600_000, 'milliseconds'),
      ),
    )
    .addOption(
      option(
        '--grpc-idle-timeout <ms>',
        'close (GOAWAY) a gRPC connection with no stream for this long',
        'GATEHOUSE_GRPC_IDLE_TIMEOUT',
        T.idleTimeoutMs,
        intInRange(1000, 86_400_000, 'milliseconds'),
      ),
    )
    .addOption(
      option(
        '--grpc-keepalive <ms>',
        'ping each gRPC connection this often',
        'GATEHOUSE_GRPC_KEEPALIVE',
        T.keepaliveTimeMs,
        intInRange(1000, 86_400_000, 'milliseconds'),
      ),
    )
    .addOption(
      option(
        '--grpc-keepalive-timeout <ms>',
        'close a connection whose ping is not answered within this',
        'GATEHOUSE_GRPC_KEEPALIVE_TIMEOUT',
        T.keepaliveTimeoutMs,
        intInRange(100, 600_000, 'milliseconds'),
      ),
    )
    .addOption(
      option(
        '--max-in-flight <n>',
        'checks decided at once per process (gRPC and HTTP mode); more are refused with RESOURCE_EXHAUSTED (HTTP: 503) (0: unbounded)',
        'GATEHOUSE_MAX_IN_FLIGHT',
        DEFAULT_SHEDDING.maxInFlight,
        intInRange(0, 1_000_000, 'checks'),
      ),
    )
    .addOption(
      new Option(
        '--audit-required',
        'while audit records cannot be written, report not ready and refuse checks (fail-closed) instead of deciding them unaudited',
      ).env('GATEHOUSE_AUDIT_REQUIRED'),
    )
    .addOption(
      option(
        '--shed-lag <ms>',
        'refuse new checks with RESOURCE_EXHAUSTED (HTTP: 503) while the event loop lags more than this (0: never)',
        'GATEHOUSE_SHED_LAG',
        DEFAULT_SHEDDING.maxEventLoopLagMs,
        intInRange(0, 60_000, 'milliseconds'),
      ),
    );
}

export function boundsOptions(
  flags: BoundsFlags,
): Pick<GatehouseOptions, 'transport' | 'shedding' | 'buckets' | 'auditRequired'> {
  return {
    auditRequired: flags.auditRequired === true || String(flags.auditRequired) === 'true',
    buckets: { maxBuckets: flags.maxBuckets, maxIdleMs: flags.bucketMaxIdle * 1000 },
    transport: {
      maxReceiveBytes: flags.grpcMaxReceive ?? flags.httpMaxBody + HEADERS_MARGIN_BYTES,
      maxReceiveTotalBytes: flags.maxReceiveBytes,
      maxConcurrentStreams: flags.grpcMaxStreams,
      maxConnections: flags.grpcMaxConnections,
      prefaceTimeoutMs: flags.grpcPrefaceTimeout,
      idleTimeoutMs: flags.grpcIdleTimeout,
      keepaliveTimeMs: flags.grpcKeepalive,
      keepaliveTimeoutMs: flags.grpcKeepaliveTimeout,
    },
    shedding: { maxInFlight: flags.maxInFlight, maxEventLoopLagMs: flags.shedLag },
  };
}
