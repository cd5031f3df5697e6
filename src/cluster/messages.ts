/** IPC between the primary and its workers. */
/** `dir`: serve this directory from now on (a new bundle); absent: reload the current one. */
export type ToWorker = { type: 'gatehouse:reload'; dir?: string };

export interface WorkerStatus {
  type: 'gatehouse:status';
  slot: number;
  ready: boolean;
  version: string;
  checks: Record<string, string>;
  failing: readonly string[];
}

export function isWorkerStatus(message: unknown): message is WorkerStatus {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'gatehouse:status';
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
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'gatehouse:audit' && typeof (message as { batch?: unknown }).batch === 'string';
}
