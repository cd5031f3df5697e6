import type { KeyObject } from 'node:crypto';
import type { Decision } from '../pipeline/decision';
import type { DecisionSink } from '../pipeline/engine';
import { HashChain } from './chain';
import { escapeLineBreaks, jsonNumber, jsonString, jsonStringOrNull } from './json';
import { LineWriter, type LineWriterOptions } from './line-writer';
import { queryKeys } from './request-shape';

function queryKeysJson(query: string): string {
  const { keys, truncated } = queryKeys(query);
  let out = ',"query_keys":[';
  for (let i = 0; i < keys.length; i++) out += `${i === 0 ? '' : ','}${jsonString(keys[i]!)}`;
  return `${out}]${truncated ? ',"query_keys_truncated":true' : ''}`;
}

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
  /** The destination workload's SPIFFE ID (`attributes.destination.principal`), or null. */
  destination: string | null;
  /** The query's keys, never its values; absent when there is no query. */
  query_keys?: string[];
  query_keys_truncated?: true;
  /** Whether each header the policy set reads was sent; never a value. Absent when the set reads none. */
  header_presence?: Record<string, boolean>;
  /** The request said it carries a body; absent when it did not. */
  body_present?: true;
}

/**
 * One JSON record per decision. The record is built from the decision only, never
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
    destination: d.destination ?? null,
  };
  if (d.policyCommit !== undefined) record.policy_commit = d.policyCommit;
  if (d.traceparent !== undefined) record.traceparent = d.traceparent;
  if (d.wouldDeny)
    record.would_deny = {
      status: d.wouldDeny.status,
      reason_code: d.wouldDeny.code,
      reason: d.wouldDeny.reason,
    };
  if (d.limit) {
    record.limit = {
      limit: d.limit.limit,
      remaining: d.limit.remaining,
      reset: d.limit.resetSeconds,
      retry_after: d.limit.retryAfterSeconds,
    };
  }
  if (d.limitBackendError !== undefined) record.limit_backend_error = d.limitBackendError;
  if (d.query !== undefined) {
    const { keys, truncated } = queryKeys(d.query);
    record.query_keys = keys;
    if (truncated) record.query_keys_truncated = true;
  }
  if (d.auditHeaders.length > 0) {
    const presence: Record<string, boolean> = {};
    d.auditHeaders.forEach((name, i) => (presence[name] = (d.headerPresence & (1 << i)) !== 0));
    record.header_presence = presence;
  }
  if (d.bodyPresent) record.body_present = true;
  return record;
}

export interface AuditLogOptions {
  /** Hand batches to this instead of writing them (workers on one stdout: the primary writes). */
  readonly sink?: LineWriterOptions['sink'];
  /** Operator-held key (`--audit-key`): records carry an HMAC only its holder can produce. */
  readonly key?: KeyObject;
  /** Told when records cannot be written (see LineWriter). */
  readonly onTrouble?: LineWriterOptions['onTrouble'];
  readonly onRecovered?: LineWriterOptions['onRecovered'];
}

/**
 * Hash-chained audit records in pino's format (`level`, `time`, the record, `msg`). Every
 * check writes one, so the line is built by hand in `auditRecord`'s field order (the same
 * JSON that JSON.stringify would give, at a third of the cost) and written in batches.
 */
export class AuditLog implements DecisionSink {
  private readonly writer: LineWriter;
  readonly chain: HashChain;
  private clockMs = -1;
  private clockIso = '';
  private presenceNames: readonly string[] | undefined;
  private presenceKeys: string[] = [];

  /** `target`: a file path, or undefined for stdout. */
  constructor(target: string | undefined, options: AuditLogOptions = {}) {
    this.writer = new LineWriter(target, {
      ...(options.sink ? { sink: options.sink } : {}),
      ...(options.onTrouble ? { onTrouble: options.onTrouble } : {}),
      ...(options.onRecovered ? { onRecovered: options.onRecovered } : {}),
    });
    this.chain = new HashChain(options.key);
  }

  record(d: Decision): void {
    const now = Date.now();
    if (now !== this.clockMs) {
      this.clockMs = now;
      this.clockIso = new Date(now).toISOString();
    }
    let fields =
      `"level":30,"time":"${this.clockIso}","decision_id":${jsonString(d.id)},"result":"${d.allowed ? 'allow' : 'deny'}",` +
      `"status":${d.status},"reason_code":${jsonString(d.code)},"reason":${jsonString(d.reason)},` +
      `"caller":${jsonStringOrNull(d.caller)},"identity_source":${jsonStringOrNull(d.identitySource)},` +
      `"host":${jsonStringOrNull(d.host)},"method":${jsonStringOrNull(d.method)},"path":${jsonStringOrNull(d.path)},` +
      `"policy":${jsonStringOrNull(d.policy?.name)},"policy_version":${jsonString(d.policyVersion)},` +
      `"rule":${jsonStringOrNull(d.rule?.name)},"dry_run":${d.policy?.mode === 'dry-run'},` +
      `"request_id":${jsonStringOrNull(d.requestId)},"latency_ms":${jsonNumber(Math.round(d.latencyMs * 1000) / 1000)},` +
      `"destination":${jsonStringOrNull(d.destination)}`;
    if (d.policyCommit !== undefined) fields += `,"policy_commit":${jsonString(d.policyCommit)}`;
    if (d.traceparent !== undefined) fields += `,"traceparent":${jsonString(d.traceparent)}`;
    const w = d.wouldDeny;
    if (w)
      fields += `,"would_deny":{"status":${w.status},"reason_code":${jsonString(w.code)},"reason":${jsonString(w.reason)}}`;
    const l = d.limit;
    if (l)
      fields += `,"limit":{"limit":${jsonNumber(l.limit)},"remaining":${jsonNumber(l.remaining)},"reset":${jsonNumber(l.resetSeconds)},"retry_after":${jsonNumber(l.retryAfterSeconds)}}`;
    if (d.limitBackendError !== undefined)
      fields += `,"limit_backend_error":${jsonString(d.limitBackendError)}`;
    if (d.query !== undefined) fields += queryKeysJson(d.query);
    if (d.auditHeaders.length > 0)
      fields += this.headerPresenceJson(d.auditHeaders, d.headerPresence);
    if (d.bodyPresent) fields += ',"body_present":true';
    fields += w ? ',"msg":"would deny (dry-run)"' : ',"msg":"decision"';
    this.writer.write(this.chain.sealFields(fields));
  }

  /** The names' JSON is built once per policy set, not per check. */
  private headerPresenceJson(names: readonly string[], bits: number): string {
    if (names !== this.presenceNames) {
      this.presenceNames = names;
      this.presenceKeys = names.map((name, i) => `${i === 0 ? '' : ','}${jsonString(name)}:`);
    }
    let out = ',"header_presence":{';
    for (let i = 0; i < this.presenceKeys.length; i++)
      out += `${this.presenceKeys[i]}${(bits & (1 << i)) !== 0}`;
    return `${out}}`;
  }

  /**
   * An event that is not a check (a caller entering or leaving quarantine), chained like
   * decisions so removing one is as visible. Rare, so plain JSON.stringify is fine.
   */
  event(name: string, details: Record<string, unknown>, msg: string): void {
    const body = escapeLineBreaks(JSON.stringify({ event: name, ...details, msg }));
    this.writer.write(
      this.chain.sealFields(`"level":30,"time":"${new Date().toISOString()}",${body.slice(1, -1)}`),
    );
  }

  /** After logrotate moved the file: later records go to a new file at the same path, the chain unbroken. */
  reopen(): boolean {
    return this.writer.reopen();
  }

  /** Records lost so far (target failing or not keeping up). */
  get dropped(): number {
    return this.writer.dropped;
  }

  /** Records are being lost now. */
  get failing(): boolean {
    return this.writer.troubled;
  }

  /** Writes out everything buffered; call before exit. */
  flush(): Promise<void> {
    return this.writer.flush();
  }
}
