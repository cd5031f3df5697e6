import { AskerGate, askerControlConfigured, type AskerOptions } from './server/askers';
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { AdminProviders, Readiness } from './admin/admin-server';
import { AuditLog, type AuditLogOptions } from './audit/audit-log';
import { Metrics } from './metrics/metrics';
import { DecisionEngine } from './pipeline/engine';
import type { PolicySet } from './policy/types';
import { PolicyHolder, type ReloadResult } from './serving/policy-holder';
import { MemoryBucketStore, type MemoryStoreOptions } from './ratelimit/memory-store';
import { BoundsMetrics, sizeOf } from './metrics/bounds-metrics';
import { describeBackendError, EpisodeLog } from './util/episode-log';
import type { TransportLimits } from './server/limits';
import { DEFAULT_SHEDDING, LoadShedder, type SheddingOptions } from './server/shedding';
import { RedisBucketStore } from './ratelimit/redis-store';
import { GrpcServer } from './server/grpc-server';
import { HttpAuthServer, type HttpModeOptions } from './server/http-mode';
import type { TrustBundle } from './identity/trust-bundle';
import {
  listQuarantine,
  openEnforcementState,
  releaseQuarantine,
  type EnforcementState,
} from './serving/enforcement-state';

export interface GatehouseOptions {
  readonly policiesDir: string;
  readonly grpcHost: string;
  readonly grpcPort: number;
  readonly trustDomains: readonly string[];
  readonly trustXfcc: boolean;
  /** X.509 authorities per trust domain, for forwarded client certificates. */
  readonly trustBundles?: ReadonlyMap<string, TrustBundle>;
  /** JWT-SVIDs: expected audience (a policy's `audience` overrides it) and clock leeway. */
  readonly jwt?: { readonly audience: string | undefined; readonly leewaySeconds: number };
  /** Who may ask the Check port (TLS client certificates, `--askers`); open when undefined. */
  readonly askers?: AskerOptions;
  /** The HTTP authorization mode (`--http-port`); off when undefined. */
  readonly http?: Omit<HttpModeOptions, 'host'>;
  /** File for audit records; stdout when undefined. */
  readonly auditLog: string | undefined;
  /** Audit batches go here instead of to `auditLog` (a worker sharing stdout: the primary writes). */
  readonly auditSink?: AuditLogOptions['sink'];
  /** `--audit-key`: HMAC the audit records with this operator-held key. */
  readonly auditKey?: KeyObject;
  readonly drainTimeoutMs: number;
  /**
   * On stop, how long to keep answering checks while already reporting NOT_SERVING (gRPC
   * health, /readyz), so health checkers and endpoint controllers move traffic away first.
   */
  readonly shutdownWaitMs?: number;
  /**
   * `--audit-required`: while audit records cannot be written, the replica is not ready and
   * refuses checks (fail-closed) instead of deciding them unaudited.
   */
  readonly auditRequired?: boolean;
  /** gRPC transport bounds; defaults in server/limits.ts. */
  readonly transport?: TransportLimits;
  /** Which checks are not decided under overload; defaults in server/shedding.ts. */
  readonly shedding?: SheddingOptions;
  /** Bounds of the in-process bucket store; defaults in ratelimit/memory-store.ts. */
  readonly buckets?: Pick<MemoryStoreOptions, 'maxBuckets' | 'maxIdleMs'>;
  /** Shared buckets; absent → the in-process store (one process only). */
  readonly redis?: {
    readonly url?: string;
    readonly clusterUrls?: readonly string[];
    readonly timeoutMs: number;
  };
}

/** Audit events for refused askers per second; beyond it only the metric counts them. */
const MAX_ASKER_EVENTS_PER_SECOND = 50;

function clipText(text: string | undefined): string | null {
  if (text === undefined) return null;
  return text.length <= 256 ? text : `${text.slice(0, 256)}…`;
}

/** A running Gatehouse: policies, engine and gRPC server, with reload, metrics and graceful stop. */
export class Gatehouse {
  private stopping: Promise<void> | undefined;
  private auditProbe: NodeJS.Timeout | undefined;

  private constructor(
    private readonly holder: PolicyHolder,
    readonly engine: DecisionEngine,
    readonly grpc: GrpcServer,
    readonly http: HttpAuthServer | undefined,
    readonly metrics: Metrics,
    private readonly audit: AuditLog,
    private readonly state: EnforcementState,
    private readonly options: GatehouseOptions,
    private readonly log: Logger,
  ) {}

  static async start(options: GatehouseOptions, log: Logger): Promise<Gatehouse> {
    const metrics = new Metrics();
    const holder = await PolicyHolder.load(options.policiesDir, log);
    holder.listen({
      applied: (set) => {
        metrics.reloaded(true);
        metrics.policyVersion(set.version);
      },
      rejected: () => metrics.reloaded(false),
    });
    metrics.policyVersion(holder.current.version);
    if (options.trustDomains.length === 0) {
      log.warn('no --trust-domain given: every caller will be refused with 401');
    }

    const auditEpisode = new EpisodeLog(log, {
      failing: 'audit log cannot be written; records are being lost',
      recovered: 'audit log written again',
      unit: 'recordsLost',
    });
    const audit: AuditLog = new AuditLog(options.auditLog, {
      ...(options.auditSink ? { sink: options.auditSink } : {}),
      key: options.auditKey,
      onTrouble: ({ error }) =>
        auditEpisode.failed(
          error ? describeBackendError(error) : 'not keeping up: 64 MB of records waiting',
          0,
        ),
      onRecovered: (lost) => {
        auditEpisode.recovered({ recordsLost: lost });
        // The gap is recorded in the chain itself, so a reader of the log sees why records are missing.
        audit.event(
          'audit.records_lost',
          { count: lost },
          'audit records were lost while the target could not be written',
        );
      },
    });
    const state = await openEnforcementState(options, log, metrics, audit);
    const store = state.store;
    const engine = new DecisionEngine({
      policies: () => holder.current,
      identity: {
        trustDomains: new Set(options.trustDomains),
        trustXfcc: options.trustXfcc,
        trustBundles: options.trustBundles ?? new Map(),
        ...(options.jwt ? { jwt: options.jwt } : {}),
      },
      store,
      sink: {
        record: (decision) => {
          audit.record(decision);
          metrics.observeDecision(decision);
        },
      },
      quarantine: state.quarantine,
      grants: state.grants,
    });
    // Refused askers are strangers: the metric counts each, the audit log takes a bounded share.
    const refusalEvents = { second: 0, written: 0 };
    const askers = askerControlConfigured(options.askers)
      ? new AskerGate(options.askers, (refusal) => {
          metrics.askerRefused(refusal.reason);
          const second = Math.floor(Date.now() / 1000);
          if (second !== refusalEvents.second) Object.assign(refusalEvents, { second, written: 0 });
          if (refusalEvents.written++ >= MAX_ASKER_EVENTS_PER_SECOND) return;
          audit.event(
            'asker.refused',
            {
              reason: refusal.reason,
              asker: clipText(refusal.asker),
              destination: clipText(refusal.destination),
            },
            'check refused: the asker may not ask about this destination',
          );
        })
      : undefined;
    const auditUnavailable = (): string | undefined =>
      audit.failing ? 'audit log cannot be written (--audit-required)' : undefined;
    let bounds: BoundsMetrics | undefined;
    const shedder = new LoadShedder(options.shedding ?? DEFAULT_SHEDDING, (reason) =>
      bounds?.checkShed(reason),
    );
    const grpc = new GrpcServer(engine, log, {
      host: options.grpcHost,
      port: options.grpcPort,
      shedder,
      ...(askers ? { askers } : {}),
      ...(options.transport ? { limits: options.transport } : {}),
      ...(options.auditRequired ? { unavailable: auditUnavailable } : {}),
      onConnectionRefused: (reason) => bounds?.connectionRefused(reason),
      onStreamRefused: () => bounds?.streamRefused('receive_budget'),
    });
    bounds = new BoundsMetrics(metrics.registry, {
      buckets: () => (store instanceof MemoryBucketStore ? store.size : 0),
      bucketsEvictedEarly: () => (store instanceof MemoryBucketStore ? store.evictedEarly : 0),
      quarantineEntries: () => sizeOf(state.quarantine, 'trackedKeys'),
      grantUses: () => sizeOf(state.grants, 'pairs'),
      connections: () => grpc.connections,
      checksInFlight: () => shedder.inFlight,
      receiveBytesHeld: () => grpc.receiveBytesHeld,
      auditDropped: () => audit.dropped,
      auditFailing: () => audit.failing,
    });
    const http = options.http
      ? new HttpAuthServer(engine, log, {
          ...options.http,
          host: options.grpcHost,
          shedder,
          receiveBudget: grpc.receiveBudget,
          ...(askers ? { askers } : {}),
          ...(options.auditRequired ? { unavailable: auditUnavailable } : {}),
          ...(options.transport
            ? {
                maxConnections: options.transport.maxConnections,
                headersTimeoutMs: options.transport.prefaceTimeoutMs,
              }
            : {}),
        })
      : undefined;
    state.grants.setGrants(holder.current.grants, Date.now());
    const app = new Gatehouse(holder, engine, grpc, http, metrics, audit, state, options, log);
    if (options.auditRequired) app.auditProbe = probeAuditWhileFailing(audit);
    await grpc.listen();
    if (http) await http.listen();
    log.info(
      {
        grpcPort: grpc.port,
        ...(http ? { httpPort: http.port, httpDialect: options.http!.dialect } : {}),
        policyVersion: holder.current.version,
        policies: holder.current.policies.map((p) => p.name),
        limiter: store.kind,
      },
      'gatehouse serving',
    );
    return app;
  }

  get policies(): PolicySet {
    return this.holder.current;
  }

  /** See PolicyHolder: coalesced, and a bad version keeps the current one serving. */
  reload(): Promise<ReloadResult> {
    return this.holder.reload();
  }

  /** Serves the policies of another directory (a new bundle); on failure the old one stays. */
  switchDirectory(dir: string): Promise<ReloadResult> {
    return this.holder.switchDirectory(dir);
  }

  readiness(): Readiness {
    const checks: Record<string, string> = { policies: this.holder.readinessCheck() };
    const failing: string[] = [];
    if (this.stopping) {
      checks['server'] = 'draining';
      failing.push('server');
    }
    if (this.options.auditRequired) {
      checks['audit'] = this.audit.failing ? 'cannot be written' : 'writable';
      if (this.audit.failing) failing.push('audit');
    }
    const store = this.state.store;
    if (store instanceof RedisBucketStore) {
      checks['redis'] = store.healthy ? 'reachable' : 'unreachable';
      if (!store.healthy) failing.push('redis');
    }
    return { checks, failing };
  }

  /** What /v1/policy shows: the version served, its policies, and the reload history. */
  policyInfo(): Record<string, unknown> {
    return this.holder.info();
  }

  adminProviders(): AdminProviders {
    return {
      readiness: () => this.readiness(),
      metrics: async () => ({
        contentType: this.metrics.registry.contentType,
        body: await this.metrics.registry.metrics(),
      }),
      policy: () => this.policyInfo(),
      quarantine: {
        list: () => listQuarantine(this.state.quarantine),
        release: (caller) => releaseQuarantine(this.state.quarantine, caller),
      },
      access: {
        report: async () => {
          await this.state.grants.sync();
          return this.state.grants.report(Date.now());
        },
        renew: (filter) => this.state.grants.renew(filter, Date.now()),
      },
      audit: { reopen: async () => this.reopenAudit() },
    };
  }

  /**
   * SIGUSR1 or `POST /v1/audit/reopen`, after logrotate renamed the audit file: later records go
   * to a new file at the `--audit-log` path. The hash chain runs on across both files.
   */
  reopenAudit(): { reopened: number; error?: string } {
    try {
      const reopened = this.audit.reopen();
      if (reopened) this.log.info({ file: this.options.auditLog }, 'audit log reopened');
      return { reopened: reopened ? 1 : 0 };
    } catch (err) {
      const error = (err as Error).message;
      this.log.error(
        { err: error, file: this.options.auditLog },
        'audit log reopen failed; records keep going to the old file',
      );
      return { reopened: 0, error };
    }
  }

  /** Graceful stop: NOT_SERVING, finish checks in flight, flush the audit log. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.grpc.health.setServing(false);
      const waitMs = this.options.shutdownWaitMs ?? 0;
      if (waitMs > 0) {
        this.log.info({ waitMs }, 'not serving; still answering checks while traffic moves away');
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
      this.log.info('draining');
      await Promise.all([
        this.grpc.drain(this.options.drainTimeoutMs),
        this.http?.close(this.options.drainTimeoutMs),
      ]);
      await this.state.close();
      clearInterval(this.auditProbe);
      await this.audit.flush();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}

/**
 * With --audit-required, checks stop while the audit target fails, so no record would ever try
 * the target again: a marker record every second does, and when one lands, checks resume and
 * the log itself says when and why decisions were refused.
 */
function probeAuditWhileFailing(audit: AuditLog): NodeJS.Timeout {
  const timer = setInterval(() => {
    if (audit.failing)
      audit.event(
        'audit.unwritable',
        {},
        'audit target could not be written; checks refused (--audit-required)',
      );
  }, 1000);
  timer.unref();
  return timer;
}
