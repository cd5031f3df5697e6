import { AskerGate, askerControlConfigured, type AskerOptions } from './server/askers';
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { AdminProviders, Readiness } from './admin/admin-server';
import { ReloadHistory } from './policy/history';
import { AuditLog, type AuditLogOptions } from './audit/audit-log';
import { Metrics } from './metrics/metrics';
import { DecisionEngine } from './pipeline/engine';
import { loadPolicyDir } from './policy/load';
import {
  describePolicySet,
  formatProblem,
  type PolicyProblem,
  type PolicySet,
} from './policy/types';
import { MemoryBucketStore, type MemoryStoreOptions } from './ratelimit/memory-store';
import { BoundsMetrics, sizeOf } from './metrics/bounds-metrics';
import { describeBackendError, EpisodeLog } from './util/episode-log';
import type { TransportLimits } from './server/limits';
import { DEFAULT_SHEDDING, LoadShedder, type SheddingOptions } from './server/shedding';
import { RedisBucketStore } from './ratelimit/redis-store';
import type { BucketStore } from './ratelimit/types';
import { GrpcServer } from './server/grpc-server';
import { HttpAuthServer, type HttpModeOptions } from './server/http-mode';
import type { TrustBundle } from './identity/trust-bundle';
import { MemoryGrantTracker } from './grants/memory';
import { RedisGrantTracker } from './grants/redis';
import type { GrantTracker } from './grants/types';
import { MemoryQuarantineState } from './quarantine/memory';
import { RedisQuarantineState } from './quarantine/redis';
import {
  subjectCaller,
  type QuarantineEntry,
  type QuarantineEvent,
  type QuarantineState,
} from './quarantine/types';

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

const REDIS_STARTUP_WAIT_MS = 2000;
/** Audit events for refused askers per second; beyond it only the metric counts them. */
const MAX_ASKER_EVENTS_PER_SECOND = 50;

function clipText(text: string | undefined): string | null {
  if (text === undefined) return null;
  return text.length <= 256 ? text : `${text.slice(0, 256)}…`;
}

export class PolicyLoadError extends Error {
  constructor(readonly problems: readonly PolicyProblem[]) {
    super(`invalid policies:\n${problems.map(formatProblem).join('\n')}`);
  }
}

/** A running Gatehouse: policies, engine and gRPC server, with reload, metrics and graceful stop. */
type ReloadResult = { ok: boolean; version: string; problems: readonly PolicyProblem[] };

export class Gatehouse {
  private stopping: Promise<void> | undefined;
  private readonly history = new ReloadHistory();
  private policiesDir: string;
  private reloadRunning: Promise<ReloadResult> | undefined;
  private reloadQueued: Promise<ReloadResult> | undefined;
  private auditProbe: NodeJS.Timeout | undefined;

  private constructor(
    private policySet: PolicySet,
    readonly engine: DecisionEngine,
    readonly grpc: GrpcServer,
    readonly http: HttpAuthServer | undefined,
    readonly metrics: Metrics,
    private readonly audit: AuditLog,
    private readonly store: BucketStore,
    private readonly state: EnforcementState,
    private readonly options: GatehouseOptions,
    private readonly log: Logger,
  ) {
    this.policiesDir = options.policiesDir;
    this.history.add('loaded', policySet.version);
    metrics.policyVersion(policySet.version);
  }

  static async start(options: GatehouseOptions, log: Logger): Promise<Gatehouse> {
    const loaded = await loadPolicyDir(options.policiesDir);
    if (!loaded.ok) throw new PolicyLoadError(loaded.problems);
    for (const w of loaded.warnings) log.warn(formatProblem(w));
    if (options.trustDomains.length === 0) {
      log.warn('no --trust-domain given: every caller will be refused with 401');
    }

    const metrics = new Metrics();
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
    const store = await openStore(options, log, metrics);
    const state = await openEnforcementState(store, log, metrics, audit);
    let app: Gatehouse | undefined;
    const engine = new DecisionEngine({
      policies: () => app!.policySet,
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
    state.grants.setGrants(loaded.set.grants, Date.now());
    app = new Gatehouse(loaded.set, engine, grpc, http, metrics, audit, store, state, options, log);
    if (options.auditRequired) app.auditProbe = probeAuditWhileFailing(audit);
    await grpc.listen();
    if (http) await http.listen();
    log.info(
      {
        grpcPort: grpc.port,
        ...(http ? { httpPort: http.port, httpDialect: options.http!.dialect } : {}),
        policyVersion: loaded.set.version,
        policies: loaded.set.policies.map((p) => p.name),
        limiter: store.kind,
      },
      'gatehouse serving',
    );
    return app;
  }

  get policies(): PolicySet {
    return this.policySet;
  }

  /**
   * Loads the directory again, off the hot path; a bad version is rejected and the current one
   * keeps serving. Reloads never overlap: during one, any number of requests coalesce into
   * exactly one more, which sees the latest files.
   */
  reload(): Promise<ReloadResult> {
    if (this.reloadQueued) return this.reloadQueued;
    if (this.reloadRunning) {
      this.reloadQueued = this.reloadRunning.then(() => {
        this.reloadQueued = undefined;
        return this.startReload();
      });
      return this.reloadQueued;
    }
    return this.startReload();
  }

  private startReload(): Promise<ReloadResult> {
    const running = this.reloadOnce().finally(() => {
      if (this.reloadRunning === running) this.reloadRunning = undefined;
    });
    this.reloadRunning = running;
    return running;
  }

  /** Serves the policies of another directory (a new bundle); on failure the old one stays. */
  async switchDirectory(dir: string): Promise<ReloadResult> {
    const previous = this.policiesDir;
    this.policiesDir = dir;
    const result = await this.reload();
    if (!result.ok) this.policiesDir = previous;
    return result;
  }

  private async reloadOnce(): Promise<ReloadResult> {
    const loaded = await loadPolicyDir(this.policiesDir);
    if (!loaded.ok) {
      const errors = loaded.problems.map(formatProblem);
      this.log.error(
        { problems: errors, keptVersion: this.policySet.version },
        'policy reload rejected',
      );
      this.metrics.reloaded(false);
      this.history.add('rejected', this.policySet.version, errors);
      return { ok: false, version: this.policySet.version, problems: loaded.problems };
    }
    const previous = this.policySet.version;
    if (loaded.set.version === previous && loaded.set.git?.commit === this.policySet.git?.commit) {
      return { ok: true, version: previous, problems: loaded.warnings }; // nothing changed
    }
    this.policySet = loaded.set; // one reference swap: a check reads the set once, so it never mixes versions
    this.metrics.reloaded(true);
    this.metrics.policyVersion(loaded.set.version);
    this.history.add('reloaded', loaded.set.version);
    this.log.info({ previous, version: loaded.set.version }, 'policies reloaded');
    return { ok: true, version: loaded.set.version, problems: loaded.warnings };
  }

  readiness(): Readiness {
    const checks: Record<string, string> = { policies: `loaded ${this.policySet.version}` };
    const failing: string[] = [];
    if (this.stopping) {
      checks['server'] = 'draining';
      failing.push('server');
    }
    if (this.options.auditRequired) {
      checks['audit'] = this.audit.failing ? 'cannot be written' : 'writable';
      if (this.audit.failing) failing.push('audit');
    }
    if (this.store instanceof RedisBucketStore) {
      checks['redis'] = this.store.healthy ? 'reachable' : 'unreachable';
      if (!this.store.healthy) failing.push('redis');
    }
    return { checks, failing };
  }

  /** What /v1/policy shows: the version served, its policies, and the reload history. */
  policyInfo(): Record<string, unknown> {
    return {
      ...describePolicySet(this.policySet, this.policiesDir),
      history: this.history.records,
    };
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
      await this.store.close();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}

/** Entries as operators know them: by caller, with the policy whose workloads it is isolated from. */
async function listQuarantine(state: QuarantineState): Promise<QuarantineEntry[]> {
  return (await state.list()).map((e) => ({ ...e, caller: subjectCaller(e.caller) }));
}

/** Releases every isolation of the caller: mesh-wide and per policy. The first released entry answers. */
async function releaseQuarantine(
  state: QuarantineState,
  caller: string,
): Promise<QuarantineEntry | undefined> {
  const subjects = [
    caller,
    ...(await state.list())
      .map((e) => e.caller)
      .filter((s) => s !== caller && subjectCaller(s) === caller),
  ];
  let first: QuarantineEntry | undefined;
  for (const subject of subjects) {
    const released = await state.release(subject);
    if (released !== undefined) first ??= { ...released, caller };
  }
  return first;
}

/** Quarantine and grant-use state: in Redis beside the buckets when configured, else in this process. */
interface EnforcementState {
  readonly quarantine: QuarantineState;
  readonly grants: GrantTracker;
  close(): Promise<void>;
}

async function openEnforcementState(
  store: BucketStore,
  log: Logger,
  metrics: Metrics,
  audit: AuditLog,
): Promise<EnforcementState> {
  const onEvent = (event: QuarantineEvent): void => {
    const e = event.entry;
    const details = {
      caller: subjectCaller(e.caller),
      policy: e.policy,
      since: new Date(e.since).toISOString(),
      until: new Date(e.until).toISOString(),
      denials: e.denials,
      dry_run: e.dryRun,
    };
    if (event.type === 'enter') {
      audit.event(
        'quarantine.enter',
        details,
        e.dryRun ? 'would quarantine caller (dry-run)' : 'caller quarantined',
      );
      metrics.quarantineEvent('enter', 'denials', e.dryRun);
      log.warn(details, e.dryRun ? 'caller would be quarantined (dry-run)' : 'caller quarantined');
    } else {
      audit.event('quarantine.leave', { ...details, cause: event.cause }, 'caller left quarantine');
      metrics.quarantineEvent('leave', event.cause, e.dryRun);
      log.info({ ...details, cause: event.cause }, 'caller left quarantine');
    }
  };
  // Once per episode, not per denial: a frozen Redis fails every quarantine count at once.
  const quarantineEpisode = new EpisodeLog(log, {
    failing:
      'quarantine state unavailable: denials are not counted towards quarantine and the mirror is not refreshed',
    recovered: 'quarantine state available again',
    unit: 'failedOperations',
  });
  const grantsEpisode = new EpisodeLog(log, {
    failing: 'grant usage state unavailable: uses are kept in this process until Redis answers',
    recovered: 'grant usage state available again',
    unit: 'failedSyncs',
  });
  const quarantineError = (err: Error): void => {
    metrics.stateError('quarantine');
    quarantineEpisode.failed(describeBackendError(err));
  };
  const grantsError = (err: Error): void => {
    metrics.stateError('grants');
    grantsEpisode.failed(describeBackendError(err));
  };
  let quarantine: QuarantineState;
  let grants: GrantTracker;
  const extra: { quit(): Promise<unknown> }[] = [];
  if (store instanceof RedisBucketStore) {
    const client = store.duplicateClient();
    const subscriber = store.duplicateClient();
    extra.push(client, subscriber);
    quarantine = new RedisQuarantineState({
      client,
      subscriber,
      onEvent,
      onError: quarantineError,
      onSuccess: () => quarantineEpisode.recovered(),
    });
    // Uses reach Redis within 2 s: a report from any replica is that fresh, at one script call per policy version per replica.
    grants = new RedisGrantTracker({
      client,
      flushMs: 2000,
      onError: grantsError,
      onSuccess: () => grantsEpisode.recovered(),
    });
    // The first sync now, not at the first timer tick: readiness below must not cost flushMs.
    grants.sync().catch(() => undefined);
    // Startup does not wait long for shared state: an unknown quarantine allows, an unknown grant is not dormant.
    await Promise.race([
      Promise.all([quarantine.ready(), grants.ready()]),
      new Promise((resolve) => setTimeout(resolve, REDIS_STARTUP_WAIT_MS).unref()),
    ]);
  } else {
    quarantine = new MemoryQuarantineState({ onEvent, onError: quarantineError });
    grants = new MemoryGrantTracker({ onWarn: (message: string) => log.warn(message) });
  }
  metrics.countQuarantinedWith(() => quarantine.activeCounts());
  metrics.countDormantGrantsWith(() => grants.dormantCount(Date.now()));
  return {
    quarantine,
    grants,
    close: async () => {
      await Promise.allSettled([grants.sync()]);
      await Promise.allSettled([quarantine.close(), grants.close()]);
      await Promise.allSettled(extra.map((c) => c.quit()));
    },
  };
}

async function openStore(
  options: GatehouseOptions,
  log: Logger,
  metrics: Metrics,
): Promise<BucketStore> {
  if (!options.redis) return new MemoryBucketStore(options.buckets);
  const redis = new RedisBucketStore({
    ...options.redis,
    log,
    onBreakerChange: (state) => metrics.breakerChanged(state),
  });
  if (!(await redis.waitUntilConnected(REDIS_STARTUP_WAIT_MS))) {
    log.warn('starting without Redis: limited routes follow onBackendError until it is reachable');
  }
  return redis;
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
