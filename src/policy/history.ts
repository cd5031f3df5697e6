/** One entry of /v1/policy's reload history. */
export interface ReloadRecord {
  readonly at: string;
  readonly result: 'loaded' | 'reloaded' | 'rejected';
  readonly version: string;
  readonly errors?: readonly string[];
}

const HISTORY_LENGTH = 20;

/** The last reloads, newest first, bounded: what an operator reads when a rollout misbehaves. */
export class ReloadHistory {
  readonly records: ReloadRecord[] = [];

  add(result: ReloadRecord['result'], version: string, errors?: readonly string[]): void {
    this.records.unshift({
      at: new Date().toISOString(),
      result,
      version,
      ...(errors ? { errors } : {}),
    });
    this.records.length = Math.min(this.records.length, HISTORY_LENGTH);
  }
}
