/** IPC between the primary and its workers. */
/** `dir`: serve this directory from now on (a new bundle); absent: reload the current one. */
export type ToWorker =
  { type: 'gatehouse:reload'; dir?: string } | { type: 'gatehouse:reopen-audit' };

export interface WorkerStatus {
  type: 'gatehouse:status';
  slot: number;
  ready: boolean;
  version: string;
  checks: Record<string, string>;
  failing: readonly string[];
}

export function isWorkerStatus(message: unknown): message is WorkerStatus {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'gatehouse:status'
  );
}

/**
 * The primary's first message to a worker: its slot, the policy directory being served now
 * (after a bundle switch, not the one the primary started with) and the `serve` flags the
 * primary parsed and validated, which the worker checks again (cli/serve-options.ts).
 */
export interface WorkerConfig {
  type: 'gatehouse:config';
  slot: number;
  policiesDir: string;
  flags: unknown;
}

export function isWorkerConfig(message: unknown): message is WorkerConfig {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Partial<Record<keyof WorkerConfig, unknown>>;
  return (
    m.type === 'gatehouse:config' &&
    Number.isSafeInteger(m.slot) &&
    (m.slot as number) > 0 &&
    typeof m.policiesDir === 'string' &&
    m.policiesDir !== ''
  );
}

/** audit.log → audit.w2.log: one hash chain per worker file. */
export function workerAuditPath(file: string, slot: number): string {
  const slash = file.lastIndexOf('/');
  const dot = file.lastIndexOf('.');
  return dot > slash + 1 ? `${file.slice(0, dot)}.w${slot}${file.slice(dot)}` : `${file}.w${slot}`;
}

/** A worker's audit records for the primary to write (workers sharing stdout). */
export interface AuditBatch {
  type: 'gatehouse:audit';
  batch: string;
}

export function isAuditBatch(message: unknown): message is AuditBatch {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'gatehouse:audit' &&
    typeof (message as { batch?: unknown }).batch === 'string'
  );
}

/** Operator state requests the primary's admin server relays to one worker (workers hold the state). */
export type AdminOp = 'quarantine.list' | 'quarantine.release' | 'access.report' | 'access.renew';

export interface AdminRequest {
  type: 'gatehouse:admin';
  id: number;
  op: AdminOp;
  arg?: unknown;
}

export interface AdminReply {
  type: 'gatehouse:admin-reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

export function isAdminRequest(message: unknown): message is AdminRequest {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'gatehouse:admin' &&
    typeof (message as { id?: unknown }).id === 'number'
  );
}

export function isAdminReply(message: unknown): message is AdminReply {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'gatehouse:admin-reply' &&
    typeof (message as { id?: unknown }).id === 'number'
  );
}
