import * as fs from 'node:fs';
import * as path from 'node:path';

/** Writes to a pipe of at most this many bytes are atomic (POSIX PIPE_BUF on Linux). */
const PIPE_BUF = 4096;
const RETRY_MS = 5;

export interface LineWriterOptions {
  /**
   * Several processes write to the same target (workers on one stdout): every write holds
   * whole lines and at most PIPE_BUF bytes where it can, so lines never interleave.
   */
  readonly shared?: boolean;
}

/**
 * Appends lines to a file or stdout, batched per event-loop turn: however many checks finish
 * in one turn, their records leave in one write, off the hot path. A quiet server still writes
 * each record in the turn that made it. (sonic-boom measures the byte length of its whole
 * pending buffer on every write, which made the audit the costliest stage under load.)
 */
export class LineWriter {
  private fd = -1;
  private pending: string[] = [];
  private scheduled = false;
  private writing = false;
  private waiters: Array<() => void> = [];
  private failed: Error | undefined;

  /** `target`: a file path (created with its folder), or undefined for stdout. */
  constructor(target: string | undefined, private readonly options: LineWriterOptions = {}) {
    if (target === undefined) {
      this.fd = 1;
    } else {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      this.fd = fs.openSync(target, 'a');
    }
  }

  /** `line` ends in '\n'. Never throws and never blocks the caller. */
  write(line: string): void {
    this.pending.push(line);
    if (!this.scheduled && !this.writing) {
      this.scheduled = true;
      setImmediate(this.drain);
    }
  }

  /** Resolves once every line written before the call is handed to the kernel. */
  flush(): Promise<void> {
    if (this.pending.length === 0 && !this.writing) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      if (!this.scheduled && !this.writing) {
        this.scheduled = true;
        setImmediate(this.drain);
      }
    });
  }

  /** The first write error, if any; records after it are dropped rather than crash the server. */
  get error(): Error | undefined {
    return this.failed;
  }

  private readonly drain = (): void => {
    this.scheduled = false;
    if (this.writing) return;
    if (this.pending.length === 0) return this.settle();
    const batch = this.options.shared ? this.takeAtomicBatch() : this.pending.join('');
    if (!this.options.shared) this.pending = [];
    this.writing = true;
    this.writeAll(Buffer.from(batch, 'utf8'));
  };

  /** Whole lines up to PIPE_BUF bytes (or one longer line alone). */
  private takeAtomicBatch(): string {
    let bytes = 0;
    let n = 0;
    while (n < this.pending.length) {
      const len = Buffer.byteLength(this.pending[n]!, 'utf8');
      if (n > 0 && bytes + len > PIPE_BUF) break;
      bytes += len;
      n++;
    }
    return this.pending.splice(0, n).join('');
  }

  private writeAll(buf: Buffer): void {
    fs.write(this.fd, buf, 0, buf.length, null, (err, written) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EBUSY') {
          setTimeout(() => this.writeAll(buf), RETRY_MS);
          return;
        }
        this.failed ??= err;
        this.pending = [];
      } else if (written < buf.length) {
        this.writeAll(buf.subarray(written));
        return;
      }
      this.writing = false;
      if (this.pending.length > 0) this.drain();
      else this.settle();
    });
  }

  private settle(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
