import { Counter, Gauge, type Registry } from 'prom-client';
import { scrapedCounter, scrapedGauge } from './scraped';
import type { RefusedConnection } from '../server/limits';
import type { ShedReason } from '../server/shedding';

/** Live sizes read at scrape time: nothing on the hot path. */
export interface BoundsSources {
  /** In-process token buckets (0 when buckets live in Redis). */
  buckets(): number;
  /** Buckets dropped before they had refilled (idle age or count bound), so far. */
  bucketsEvictedEarly(): number;
  /** Quarantine windows and entries held in this process. */
  quarantineEntries(): number;
  /** (grant, caller) last-use pairs held in this process. */
  grantUses(): number;
  connections(): number;
  checksInFlight(): number;
  /** Bytes of gRPC request messages held now. */
  receiveBytesHeld(): number;
  /** Audit records lost so far, and whether they are being lost now. */
  auditDropped(): number;
  auditFailing(): boolean;
}

/**
 * The metrics of what callers can grow and what is refused to keep it bounded. Sizes are per
 * process; with --workers the primary sums them, which is the memory the pod holds.
 */
export class BoundsMetrics {
  private readonly shed: Counter<'reason'>;
  private readonly refused: Counter<'reason'>;
  private readonly streamsRefused: Counter<'reason'>;

  constructor(registry: Registry, sources: BoundsSources) {
    const registers = [registry];
    scrapedGauge(
      {
        name: 'gatehouse_buckets',
        help: 'In-process token buckets held (bounded by --max-buckets; 0 when buckets live in Redis).',
        registers,
      },
      () => sources.buckets(),
    );
    scrapedCounter(
      {
        name: 'gatehouse_buckets_evicted_early_total',
        help: 'In-process buckets dropped before they had refilled (idle for --bucket-max-idle, or past --max-buckets); each could let its caller spend up to one capacity early.',
        registers,
      },
      () => sources.bucketsEvictedEarly(),
    );
    new Gauge({
      name: 'gatehouse_state_entries',
      help: 'Entries held in this process by the enforcement state tables (table=quarantine|grant_uses).',
      labelNames: ['table'],
      registers,
      collect() {
        this.set({ table: 'quarantine' }, sources.quarantineEntries());
        this.set({ table: 'grant_uses' }, sources.grantUses());
      },
    });
    scrapedGauge(
      {
        name: 'gatehouse_grpc_connections',
        help: 'Open gRPC connections (bounded by --grpc-max-connections).',
        registers,
      },
      () => sources.connections(),
    );
    scrapedGauge(
      {
        name: 'gatehouse_checks_in_flight',
        help: 'Checks being decided now, gRPC and HTTP mode (bounded by --max-in-flight).',
        registers,
      },
      () => sources.checksInFlight(),
    );
    scrapedGauge(
      {
        name: 'gatehouse_grpc_receive_bytes',
        help: 'Bytes of gRPC request messages held now (bounded by --max-receive-bytes).',
        registers,
      },
      () => sources.receiveBytesHeld(),
    );
    scrapedCounter(
      {
        name: 'gatehouse_audit_records_dropped_total',
        help: 'Audit records lost because the audit target could not be written or did not keep up.',
        registers,
      },
      () => sources.auditDropped(),
    );
    scrapedGauge(
      {
        name: 'gatehouse_audit_failing',
        help: '1 while audit records are being lost (with --audit-required, checks are refused meanwhile).',
        registers,
        aggregator: 'max',
      },
      () => (sources.auditFailing() ? 1 : 0),
    );
    this.shed = new Counter({
      name: 'gatehouse_checks_shed_total',
      help: 'Checks not decided: reason=deadline (already past its grpc-timeout), in_flight or event_loop_lag (overload, answered RESOURCE_EXHAUSTED, or 503 in the HTTP mode).',
      labelNames: ['reason'],
      registers,
    });
    this.refused = new Counter({
      name: 'gatehouse_connections_refused_total',
      help: 'gRPC connections closed before use: reason=connection_limit or preface_timeout.',
      labelNames: ['reason'],
      registers,
    });
    this.streamsRefused = new Counter({
      name: 'gatehouse_streams_refused_total',
      help: 'Checks refused while their request was being received, never decided: reason=receive_budget (--max-receive-bytes spent; gRPC streams reset with REFUSED_STREAM, HTTP-mode requests answered 503).',
      labelNames: ['reason'],
      registers,
    });
    this.streamsRefused.inc({ reason: 'receive_budget' }, 0);
    for (const reason of ['deadline', 'in_flight', 'event_loop_lag'] as const)
      this.shed.inc({ reason }, 0);
    for (const reason of ['connection_limit', 'preface_timeout'] as const)
      this.refused.inc({ reason }, 0);
  }

  checkShed(reason: ShedReason): void {
    this.shed.inc({ reason });
  }

  connectionRefused(reason: RefusedConnection): void {
    this.refused.inc({ reason });
  }

  streamRefused(reason: 'receive_budget'): void {
    this.streamsRefused.inc({ reason });
  }
}

/** A table's size where the implementation exposes one (memory and Redis mirrors do). */
export function sizeOf(table: object, property: 'trackedKeys' | 'pairs' | 'size'): number {
  const value = (table as Record<string, unknown>)[property];
  return typeof value === 'number' ? value : 0;
}
