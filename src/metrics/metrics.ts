import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { scrapedGauge } from './scraped';
import type { Decision } from '../pipeline/decision';
import type { BreakerState } from '../ratelimit/breaker';
import type { QuarantineCounts } from '../quarantine/types';

const VERSION: string = (() => {
  try {
    // package.json sits two levels above both src/metrics and dist/metrics.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- outside rootDir, so not an import
    return (require('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

export const BREAKER_STATE_VALUE: Record<BreakerState, number> = {
  closed: 0,
  'half-open': 1,
  open: 2,
};

/**
 * Prometheus metrics of one process. In worker mode each worker has its own and the
 * primary serves their aggregate; gauges that describe a state use `max` so the
 * aggregate shows the worst worker rather than a meaningless sum.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly checks: Counter<'result' | 'status' | 'reason' | 'policy'>;
  private readonly latency: Histogram<'result'>;
  private readonly redisErrors: Counter;
  private readonly breaker: Gauge;
  private readonly reloads: Counter<'result'>;
  private readonly policyInfo: Gauge<'version'>;
  private readonly quarantineEvents: Counter<'event' | 'cause' | 'mode'>;
  private readonly enforcementErrors: Counter<'component'>;
  private readonly askerRefusals: Counter<'reason'>;
  private readonly labelCache = new Map<string, Counter.Internal>();
  private readonly latencyByResult = new Map<string, Histogram.Internal<'result'>>();
  private quarantineCounts: () => QuarantineCounts = () => ({ enforce: 0, dryRun: 0 });
  private dormantGrants: () => number = () => 0;

  constructor() {
    const registers = [this.registry];
    this.checks = new Counter({
      name: 'gatehouse_checks_total',
      help: 'Checks decided, by result (allow, deny, dry_run_deny), HTTP status, reason code and policy.',
      labelNames: ['result', 'status', 'reason', 'policy'],
      registers,
    });
    this.latency = new Histogram({
      name: 'gatehouse_check_duration_seconds',
      help: 'Time to decide one check, from decode to response (excludes gRPC transport).',
      labelNames: ['result'],
      buckets: [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
      ],
      registers,
    });
    this.redisErrors = new Counter({
      name: 'gatehouse_redis_errors_total',
      help: 'Limited checks whose Redis call failed or was skipped by the open breaker.',
      registers,
    });
    this.breaker = new Gauge({
      name: 'gatehouse_redis_breaker_state',
      help: 'Rate-limit backend breaker: 0 closed, 1 half-open, 2 open.',
      registers,
      aggregator: 'max',
    });
    this.reloads = new Counter({
      name: 'gatehouse_policy_reloads_total',
      help: 'Policy reloads by result (ok, rejected).',
      labelNames: ['result'],
      registers,
    });
    this.policyInfo = new Gauge({
      name: 'gatehouse_policy_info',
      help: 'The policy set version being served (value 1).',
      labelNames: ['version'],
      registers,
      aggregator: 'max',
    });
    new Gauge({
      name: 'gatehouse_build_info',
      help: 'Gatehouse build information (value 1).',
      labelNames: ['version', 'node'],
      registers,
      aggregator: 'max',
    }).set({ version: VERSION, node: process.version }, 1);
    this.quarantineEvents = new Counter({
      name: 'gatehouse_quarantine_events_total',
      help: 'Callers entering (event=enter) and leaving (event=leave, cause=expired|released) quarantine, as seen by this replica.',
      labelNames: ['event', 'cause', 'mode'],
      registers,
    });
    const quarantineCounts = (): QuarantineCounts => this.quarantineCounts();
    // Read at scrape time from the state itself, so a replica that only mirrors a quarantine
    // (or sees one expire) reports it as well as the replica that decided it.
    new Gauge({
      name: 'gatehouse_quarantined_callers',
      help: 'Callers in quarantine now (mode=enforce|dry-run), mesh-wide as this replica mirrors it.',
      labelNames: ['mode'],
      registers,
      aggregator: 'max',
      collect() {
        const counts = quarantineCounts();
        this.set({ mode: 'enforce' }, counts.enforce);
        this.set({ mode: 'dry-run' }, counts.dryRun);
      },
    });
    scrapedGauge(
      {
        name: 'gatehouse_dormant_grants',
        help: "Grants lapsed from disuse (expiresAfterUnused): a caller's, or an allow entry nobody used in time; as this replica sees them (gatehouse access report lists them).",
        registers,
        aggregator: 'max',
      },
      () => this.dormantGrants(),
    );
    this.enforcementErrors = new Counter({
      name: 'gatehouse_state_errors_total',
      help: 'Background errors of shared enforcement state (component=quarantine|grants).',
      labelNames: ['component'],
      registers,
    });
    this.askerRefusals = new Counter({
      name: 'gatehouse_asker_refusals_total',
      help: 'Check RPCs refused before deciding because the asker may not ask (reason=no_asker_identity|asker_not_listed|not_own_destination).',
      labelNames: ['reason'],
      registers,
    });
    this.reloads.inc({ result: 'ok' }, 0);
    this.reloads.inc({ result: 'rejected' }, 0);
    // process_* and nodejs_* (CPU, memory, heap, GC, event-loop lag), read at scrape time; with
    // workers the primary serves their aggregate.
    collectDefaultMetrics({ register: this.registry });
  }

  observeDecision(d: Decision): void {
    const result = d.allowed ? (d.wouldDeny ? 'dry_run_deny' : 'allow') : 'deny';
    const status = d.wouldDeny ? d.wouldDeny.status : d.status;
    const reason = d.wouldDeny ? d.wouldDeny.code : d.code;
    const policy = d.policy?.name ?? '';
    // Labelled children are cached: label lookup is the costly part of inc().
    const key = `${result}|${status}|${reason}|${policy}`;
    let child = this.labelCache.get(key);
    if (child === undefined) {
      child = this.checks.labels(result, String(status), reason, policy);
      this.labelCache.set(key, child);
    }
    child.inc();
    let latency = this.latencyByResult.get(result);
    if (latency === undefined) {
      latency = this.latency.labels(result);
      this.latencyByResult.set(result, latency);
    }
    latency.observe(d.latencyMs / 1000);
    if (d.limitBackendError !== undefined) this.redisErrors.inc();
  }

  breakerChanged(state: BreakerState): void {
    this.breaker.set(BREAKER_STATE_VALUE[state]);
  }

  quarantineEvent(event: 'enter' | 'leave', cause: string, dryRun: boolean): void {
    this.quarantineEvents.inc({ event, cause, mode: dryRun ? 'dry-run' : 'enforce' });
  }

  askerRefused(reason: string): void {
    this.askerRefusals.inc({ reason });
  }

  /** Where the dormant-grants gauge reads its value (synchronous, no I/O). */
  countDormantGrantsWith(count: () => number): void {
    this.dormantGrants = count;
  }

  /** Where the quarantine gauge reads its value (synchronous, no I/O: it runs on every scrape). */
  countQuarantinedWith(counts: () => QuarantineCounts): void {
    this.quarantineCounts = counts;
  }

  stateError(component: 'quarantine' | 'grants'): void {
    this.enforcementErrors.inc({ component });
  }

  reloaded(ok: boolean): void {
    this.reloads.inc({ result: ok ? 'ok' : 'rejected' });
  }

  policyVersion(version: string): void {
    this.policyInfo.reset();
    this.policyInfo.set({ version }, 1);
  }
}

export const GATEHOUSE_VERSION = VERSION;
