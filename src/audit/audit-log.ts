import pino from 'pino';
import type { Decision } from '../pipeline/decision';
import type { DecisionSink } from '../pipeline/engine';
import { HashChain } from './chain';

export interface AuditRecord {
  decision_id: string;
  result: 'allow' | 'deny';
  status: number;
  reason_code: string;
  reason: string;
  caller: string | null;
  identity_source: string | null;
  host: string | null;
  method: string | null;
  path: string | null;
  policy: string | null;
  policy_version: string;
  policy_commit?: string;
  rule: string | null;
  dry_run: boolean;
  would_deny?: { status: number; reason_code: string; reason: string };
  limit?: { limit: number; remaining: number; reset: number; retry_after: number };
  limit_backend_error?: string;
  request_id: string | null;
  traceparent?: string;
  latency_ms: number;
}

/**
 * Stage 6: one JSON record per decision. The record is built from the decision only, never
 * from headers, so no authorization header or token can reach it.
 */
export function auditRecord(d: Decision): AuditRecord {
  const record: AuditRecord = {
    decision_id: d.id,
    result: d.allowed ? 'allow' : 'deny',
    status: d.status,
    reason_code: d.code,
    reason: d.reason,
    caller: d.caller ?? null,
    identity_source: d.identitySource ?? null,
    host: d.host ?? null,
    method: d.method ?? null,
    path: d.path ?? null,
    policy: d.policy?.name ?? null,
    policy_version: d.policyVersion,
    rule: d.rule?.name ?? null,
    dry_run: d.policy?.mode === 'dry-run',
    request_id: d.requestId ?? null,
    latency_ms: Math.round(d.latencyMs * 1000) / 1000,
  };
  if (d.policyCommit !== undefined) record.policy_commit = d.policyCommit;
  if (d.traceparent !== undefined) record.traceparent = d.traceparent;
  if (d.wouldDeny) record.would_deny = { status: d.wouldDeny.status, reason_code: d.wouldDeny.code, reason: d.wouldDeny.reason };
  if (d.limit) {
    record.limit = { limit: d.limit.limit, remaining: d.limit.remaining, reset: d.limit.resetSeconds, retry_after: d.limit.retryAfterSeconds };
  }
  if (d.limitBackendError !== undefined) record.limit_backend_error = d.limitBackendError;
  return record;
}

export interface AuditLogOptions {
  /** Several processes share the target (workers on one stdout): write each record whole, at once. */
  readonly shared?: boolean;
}

type Destination = ReturnType<typeof pino.destination>;

/**
 * Hash-chained audit records in pino's format (`level`, `time`, the record, `msg`) on pino's
 * destination. The line is built with one JSON.stringify: pino's generic serializer costs
 * four times as much per record, and every check writes one.
 */
export class AuditLog implements DecisionSink {
  private readonly destination: Destination;
  readonly chain = new HashChain();

  /** `target`: a file path, or undefined for stdout. */
  constructor(target: string | undefined, options: AuditLogOptions = {}) {
    // Asynchronous by default: writes coalesce while one is in flight, so the hot path never
    // waits on disk and a quiet server still shows each decision at once. A shared pipe needs
    // one write per record instead, so records from several processes never interleave.
    // minLength 1 writes every record at once as 0 would, but with 0 sonic-boom's flush()
    // returns before a write in flight lands; with 1 it waits for the drain.
    this.destination = pino.destination({ dest: target ?? 1, sync: options.shared === true, mkdir: true, minLength: 1 });
  }

  record(decision: Decision): void {
    const record = auditRecord(decision);
    const body = JSON.stringify(record);
    const msg = record.would_deny ? 'would deny (dry-run)' : 'decision';
    const line = `{"level":30,"time":"${new Date().toISOString()}",${body.slice(1, -1)},"msg":"${msg}"}\n`;
    this.destination.write(this.chain.seal(line));
  }

  /** Writes out everything buffered; call before exit. */
  flush(): Promise<void> {
    return new Promise((resolve) => {
      try {
        this.destination.flush((err?: Error) => resolve(void err));
      } catch {
        resolve(); // not open yet: nothing was written
      }
    });
  }
}
