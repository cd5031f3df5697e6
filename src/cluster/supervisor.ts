import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import { AdminServer, type Readiness } from '../admin/admin-server';
import type { GatehouseOptions } from '../app';
import { PolicyHolder } from '../serving/policy-holder';
import {
  isAdminReply,
  isAuditBatch,
  isWorkerStatus,
  type AdminOp,
  type AdminReply,
  type AdminRequest,
  type ToWorker,
  type WorkerConfig,
  type WorkerStatus,
} from './messages';
import { LineWriter } from '../audit/line-writer';
import { PRIMARY_OWNED_FAMILIES, withoutFamilies } from './metric-families';
import { describeBackendError } from '../util/episode-log';

export interface SupervisorOptions {
  readonly workers: number;
  readonly adminHost: string;
  readonly adminPort: number;
  /** Bearer token for admin changes from other hosts (`--admin-token-file`). */
  readonly adminToken?: Buffer;
  readonly gatehouse: GatehouseOptions;
  /** The validated `serve` flags, sent to every worker with its slot (messages.ts WorkerConfig). */
  readonly workerFlags: unknown;
}

const RESTART_DELAY_MS = 200;
const MAX_RESTART_DELAY_MS = 10_000;

interface Slot {
  worker: Worker;
  status?: WorkerStatus;
  restarts: number;
}

/**
 * The primary of `--workers N`: validates the policies (so `serve` refuses bad ones with the
 * validate messages), forks one worker per slot, restarts a worker that dies, fans reloads
 * out on SIGHUP, restarts workers one at a time on SIGUSR2, serves the admin port with
 * metrics aggregated over all workers, and on SIGTERM drains every worker before exiting 0.
 */
export class Supervisor {
  private readonly slots = new Map<number, Slot>();
  private readonly registry = new Registry();
  private readonly aggregator = new AggregatorRegistry();
  private readonly restartsCounter: Counter;
  private readonly reloadsCounter: Counter<'result'>;
  private readonly policyReloads: Counter<'result'>;
  private readonly admin: AdminServer;
  private shuttingDown = false;
  private rolling = false;
  /** Workers without --audit-log send their records here: one writer on stdout. */
  private readonly auditOut = new LineWriter(undefined, {
    onTrouble: ({ error }) =>
      this.log.error(
        { cause: error ? describeBackendError(error) : 'not keeping up: 64 MB of records waiting' },
        'audit records cannot be written to stdout; records are being lost',
      ),
    onRecovered: (lost) =>
      this.log.info({ recordsLost: lost }, 'audit records written to stdout again'),
  });

  private constructor(
    private readonly options: SupervisorOptions,
    private readonly log: Logger,
    private readonly policies: PolicyHolder,
  ) {
    policies.listen({
      applied: (set, _previous, directoryChanged) => {
        this.countReload('ok');
        this.broadcast(
          directoryChanged
            ? { type: 'gatehouse:reload', dir: policies.directory }
            : { type: 'gatehouse:reload' },
        );
        log.info({ version: set.version }, 'workers told to reload');
      },
      rejected: () => this.countReload('rejected'),
    });
    this.restartsCounter = new Counter({
      name: 'gatehouse_worker_restarts_total',
      help: 'Workers restarted after dying.',
      registers: [this.registry],
    });
    this.reloadsCounter = new Counter({
      name: 'gatehouse_primary_reloads_total',
      help: 'Policy reloads ordered by the primary, by result.',
      labelNames: ['result'],
      registers: [this.registry],
    });
    // The same name and meaning as without workers: one count per reload, rejected ones included.
    this.policyReloads = new Counter({
      name: 'gatehouse_policy_reloads_total',
      help: 'Policy reloads by result (ok, rejected).',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.policyReloads.inc({ result: 'ok' }, 0);
    this.policyReloads.inc({ result: 'rejected' }, 0);
    new Gauge({
      name: 'gatehouse_workers',
      help: 'Configured worker processes.',
      registers: [this.registry],
    }).set(options.workers);
    this.admin = new AdminServer(
      {
        readiness: () => this.readiness(),
        metrics: async () => ({
          contentType: this.registry.contentType,
          body: `${await this.registry.metrics()}\n${withoutFamilies(await this.aggregator.clusterMetrics(), PRIMARY_OWNED_FAMILIES)}`,
        }),
        policy: () => this.policyInfo(),
        // Workers hold the quarantine and grant state (shared through Redis); one answers for all.
        quarantine: {
          list: async () => (await this.askWorker('quarantine.list')) as unknown[],
          release: async (caller) =>
            (await this.askWorker('quarantine.release', { caller })) ?? undefined,
        },
        access: {
          report: async () => (await this.askWorker('access.report')) as unknown[],
          renew: async (filter) => (await this.askWorker('access.renew', filter)) as number,
        },
        audit: { reopen: async () => this.reopenAudit() },
      },
      log,
      options.adminToken ? { token: options.adminToken } : {},
    );
  }

  static async start(options: SupervisorOptions, log: Logger): Promise<Supervisor> {
    // Validated here first, so `serve` refuses bad policies before any worker starts.
    const policies = await PolicyHolder.load(options.gatehouse.policiesDir, log);
    const supervisor = new Supervisor(options, log, policies);
    const adminPort = await supervisor.admin.listen(options.adminHost, options.adminPort);
    for (let slot = 1; slot <= options.workers; slot++) supervisor.fork(slot);
    log.info(
      { workers: options.workers, adminPort, policyVersion: policies.current.version },
      'gatehouse primary started',
    );
    return supervisor;
  }

  /** The primary's own metrics, served beside the workers' aggregate. */
  get metricsRegistry(): Registry {
    return this.registry;
  }

  /**
   * SIGHUP, a file change or a new bundle (`dir`): validate here first, then every worker
   * loads the same directory. Returns whether the new version was accepted.
   */
  async reload(dir?: string): Promise<boolean> {
    const result = await (dir === undefined
      ? this.policies.reload()
      : this.policies.switchDirectory(dir));
    return result.ok;
  }

  private countReload(result: 'ok' | 'rejected'): void {
    this.reloadsCounter.inc({ result });
    this.policyReloads.inc({ result });
  }

  /** SIGUSR1 or the admin call: each worker reopens its own audit file (workers on stdout have none). */
  reopenAudit(): { reopened: number } {
    if (this.options.gatehouse.auditLog === undefined) return { reopened: 0 };
    this.broadcast({ type: 'gatehouse:reopen-audit' });
    this.log.info({ workers: this.slots.size }, 'audit log reopen: workers told');
    return { reopened: this.slots.size };
  }

  /** SIGUSR2: replace workers one by one; each old one drains only once its successor listens. */
  async rollingRestart(): Promise<void> {
    if (this.rolling || this.shuttingDown) return;
    this.rolling = true;
    try {
      for (const [slot, current] of [...this.slots]) {
        const old = current.worker;
        const successor = this.fork(slot);
        await new Promise<void>((resolve) => successor.once('listening', () => resolve()));
        await this.retire(old);
      }
      this.log.info('rolling restart complete');
    } finally {
      this.rolling = false;
    }
  }

  /** SIGTERM: every worker drains (finishing checks in flight), then the primary exits. */
  async stop(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.log.info('draining workers');
    await Promise.all([...this.slots.values()].map((s) => this.retire(s.worker)));
    await this.auditOut.flush();
    await this.admin.close();
    this.log.info('stopped');
  }

  private fork(slot: number): Worker {
    const worker = cluster.fork();
    // The directory being served now: after a bundle switch, a restarted worker must not
    // come back on the directory the primary started with.
    worker.send({
      type: 'gatehouse:config',
      slot,
      policiesDir: this.policies.directory,
      flags: this.options.workerFlags,
    } satisfies WorkerConfig);
    const previous = this.slots.get(slot);
    this.slots.set(slot, { worker, restarts: previous?.restarts ?? 0 });
    worker.on('message', (message: unknown) => {
      const entry = this.slots.get(slot);
      if (isWorkerStatus(message) && entry?.worker === worker) entry.status = message;
      else if (isAuditBatch(message)) this.auditOut.write(message.batch);
      else if (isAdminReply(message)) this.adminReplies.get(message.id)?.(message);
    });
    worker.on('exit', (code, signal) => this.onExit(slot, worker, code, signal));
    return worker;
  }

  private readonly adminReplies = new Map<number, (reply: AdminReply) => void>();
  private nextAdminId = 1;

  private askWorker(op: AdminOp, arg?: unknown): Promise<unknown> {
    const live = [...this.slots.values()].find((s) => !s.worker.isDead() && s.worker.isConnected());
    if (!live) return Promise.reject(new Error('no worker is running'));
    const id = this.nextAdminId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.adminReplies.delete(id);
        reject(new Error('the worker did not answer within 5 s'));
      }, 5000);
      this.adminReplies.set(id, (reply) => {
        clearTimeout(timer);
        this.adminReplies.delete(id);
        if (reply.ok) resolve(reply.value);
        else reject(new Error(reply.error ?? 'worker error'));
      });
      live.worker.send({ type: 'gatehouse:admin', id, op, arg } satisfies AdminRequest);
    });
  }

  private onExit(slot: number, worker: Worker, code: number | null, signal: string | null): void {
    const entry = this.slots.get(slot);
    if (this.shuttingDown || entry?.worker !== worker) return; // drained on purpose, or already replaced
    entry.restarts++;
    this.restartsCounter.inc();
    const delay = Math.min(
      RESTART_DELAY_MS * 2 ** Math.min(entry.restarts - 1, 6),
      MAX_RESTART_DELAY_MS,
    );
    this.log.error(
      { slot, pid: worker.process.pid, code, signal, restartInMs: delay },
      'worker died; restarting',
    );
    entry.status = undefined;
    setTimeout(() => {
      if (!this.shuttingDown && this.slots.get(slot)?.worker === worker) this.fork(slot);
    }, delay).unref();
  }

  private retire(worker: Worker): Promise<void> {
    if (worker.isDead()) return Promise.resolve();
    const deadline =
      (this.options.gatehouse.shutdownWaitMs ?? 0) + this.options.gatehouse.drainTimeoutMs + 2000;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ pid: worker.process.pid }, 'worker did not drain in time; killing it');
        worker.process.kill('SIGKILL');
      }, deadline);
      timer.unref();
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      worker.process.kill('SIGTERM');
    });
  }

  private broadcast(message: ToWorker): void {
    for (const { worker } of this.slots.values()) if (worker.isConnected()) worker.send(message);
  }

  private readiness(): Readiness {
    const statuses = [...this.slots.values()].map((s) => s.status);
    const readyCount = statuses.filter((s) => s?.ready).length;
    const checks: Record<string, string> = {
      workers: `${readyCount}/${this.options.workers} ready`,
      policies: this.policies.readinessCheck(),
    };
    const failing: string[] = [];
    // A worker whose only problem is Redis still serves; that is the `redis` check's to report.
    const serving = statuses.filter(
      (s) => s !== undefined && s.failing.every((f) => f === 'redis'),
    ).length;
    if (serving < this.options.workers) failing.push('workers');
    const redis = statuses.find((s) => s?.checks['redis'])?.checks['redis'];
    if (redis) checks['redis'] = redis;
    if (statuses.some((s) => s?.failing.includes('redis'))) failing.push('redis');
    if (this.shuttingDown) {
      checks['server'] = 'draining';
      failing.push('server');
    }
    return { checks, failing };
  }

  private policyInfo(): Record<string, unknown> {
    return {
      ...this.policies.info(),
      workers: [...this.slots.entries()].map(([slot, s]) => ({
        slot,
        pid: s.worker.process.pid,
        version: s.status?.version ?? null,
        ready: s.status?.ready ?? false,
      })),
    };
  }
}
