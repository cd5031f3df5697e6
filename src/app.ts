import type { Logger } from 'pino';
import { AuditLog } from './audit/audit-log';
import { DecisionEngine } from './pipeline/engine';
import { loadPolicyDir } from './policy/load';
import { formatProblem, type PolicyProblem, type PolicySet } from './policy/types';
import { MemoryBucketStore } from './ratelimit/memory-store';
import { RedisBucketStore } from './ratelimit/redis-store';
import type { BucketStore } from './ratelimit/types';
import { GrpcServer } from './server/grpc-server';

export interface GatehouseOptions {
  readonly policiesDir: string;
  readonly grpcHost: string;
  readonly grpcPort: number;
  readonly trustDomains: readonly string[];
  readonly trustXfcc: boolean;
  /** File for audit records; stdout when undefined. */
  readonly auditLog: string | undefined;
  readonly drainTimeoutMs: number;
  /** Shared buckets; absent → the in-process store (one process only). */
  readonly redis?: { readonly url?: string; readonly clusterUrls?: readonly string[]; readonly timeoutMs: number };
}

const REDIS_STARTUP_WAIT_MS = 2000;

export class PolicyLoadError extends Error {
  constructor(readonly problems: readonly PolicyProblem[]) {
    super(`invalid policies:\n${problems.map(formatProblem).join('\n')}`);
  }
}

/** A running Gatehouse: policies, engine and servers, with reload and graceful stop. */
export class Gatehouse {
  private stopping: Promise<void> | undefined;

  private constructor(
    private policySet: PolicySet,
    readonly engine: DecisionEngine,
    readonly grpc: GrpcServer,
    private readonly audit: AuditLog,
    private readonly store: BucketStore,
    private readonly options: GatehouseOptions,
    private readonly log: Logger,
  ) {}

  static async start(options: GatehouseOptions, log: Logger): Promise<Gatehouse> {
    const loaded = await loadPolicyDir(options.policiesDir);
    if (!loaded.ok) throw new PolicyLoadError(loaded.problems);
    for (const w of loaded.warnings) log.warn(formatProblem(w));
    if (options.trustDomains.length === 0) {
      log.warn('no --trust-domain given: every caller will be refused with 401');
    }

    const audit = new AuditLog(options.auditLog);
    let store: BucketStore;
    if (options.redis) {
      const redis = new RedisBucketStore({ ...options.redis, log });
      if (!(await redis.waitUntilConnected(REDIS_STARTUP_WAIT_MS))) {
        log.warn('starting without Redis: limited routes follow onBackendError until it is reachable');
      }
      store = redis;
    } else {
      store = new MemoryBucketStore();
    }
    let app: Gatehouse | undefined;
    const engine = new DecisionEngine({
      policies: () => app!.policySet,
      identity: { trustDomains: new Set(options.trustDomains), trustXfcc: options.trustXfcc },
      store,
      sink: audit,
    });
    const grpc = new GrpcServer(engine, log, { host: options.grpcHost, port: options.grpcPort });
    app = new Gatehouse(loaded.set, engine, grpc, audit, store, options, log);
    await grpc.listen();
    log.info(
      { grpcPort: grpc.port, policyVersion: loaded.set.version, policies: loaded.set.policies.map((p) => p.name), limiter: store.kind },
      'gatehouse serving',
    );
    return app;
  }

  get policies(): PolicySet {
    return this.policySet;
  }

  /** Loads the directory again; a bad version is rejected and the current one keeps serving. */
  async reload(): Promise<{ ok: boolean; version: string; problems: readonly PolicyProblem[] }> {
    const loaded = await loadPolicyDir(this.options.policiesDir);
    if (!loaded.ok) {
      this.log.error({ problems: loaded.problems.map(formatProblem), keptVersion: this.policySet.version }, 'policy reload rejected');
      return { ok: false, version: this.policySet.version, problems: loaded.problems };
    }
    const previous = this.policySet.version;
    this.policySet = loaded.set; // one reference swap: a check reads the set once, so it never mixes versions
    this.log.info({ previous, version: loaded.set.version }, 'policies reloaded');
    return { ok: true, version: loaded.set.version, problems: loaded.warnings };
  }

  /** Graceful stop: NOT_SERVING, finish checks in flight, flush the audit log. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('draining');
      await this.grpc.drain(this.options.drainTimeoutMs);
      await this.audit.flush();
      await this.store.close();
      this.log.info('stopped');
    })();
    return this.stopping;
  }
}
