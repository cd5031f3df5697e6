import * as fs from 'node:fs';
import * as path from 'node:path';

const RETRY_MS = 5;
/** Lines waiting on a stalled disk are bounded: past this, new lines are dropped and counted. */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;

export interface LineWriterOptions {
  /**
   * Told when writing starts failing (once, until a write succeeds again) and when lines are
   * dropped for want of space: an audit trail must not fail silently, nor take the server down.
   */
  readonly onTrouble?: (trouble: { error?: Error; dropped?: number }) => void;
  /** Told when a write succeeds after trouble, with the lines lost since the trouble began. */
  readonly onRecovered?: (lost: number) => void;
  /**
   * Hand each batch to this instead of writing it (workers on one stdout send theirs to the
   * primary, the one writer); `done` is called once the batch is on its way.
   */
  readonly sink?: (batch: string, done: (err: Error | null) => void) => void;
}

/**
 * Appends lines to a file or stdout, batched per event-loop turn: however many checks finish
 * in one turn, their records leave in one write, off the hot path. A quiet server still writes
 * each record in the turn that made it. (sonic-boom measures the byte length of its whole
 * pending buffer on every write, which made the audit the costliest stage under load.)
 */
export class LineWriter {
  /** -1 with a sink: nothing is opened. */
  private fd: number;
  /** The descriptor the batch in flight goes to; a reopen never moves a batch half-way. */
  private batchFd = -1;
  /** Descriptors replaced by a reopen, closed once the batch in flight on them is written. */
  private retired: number[] = [];
  private pending: string[] = [];
  private scheduled = false;
  private writing = false;
  private waiters: Array<() => void> = [];
  private failing = false;
  private pendingBytes = 0;
  private inFlightLines = 0;
  private droppedSinceReport = 0;
  /** `dropped` when the current trouble began; undefined while writes succeed. */
  private droppedAtTrouble: number | undefined;
  /** Lines dropped because the target could not keep up or could not be written. */
  dropped = 0;

  /** Lines are being lost now: the last write failed, or the pending bound was hit since the last success. */
  get troubled(): boolean {
    return this.droppedAtTrouble !== undefined || this.failing;
  }

  /** `target`: a file path (created with its folder), or undefined for stdout. */
  constructor(
    private readonly target: string | undefined,
    private readonly options: LineWriterOptions = {},
  ) {
    if (options.sink) {
      this.fd = -1;
    } else if (target === undefined) {
      this.fd = 1;
    } else {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      this.fd = fs.openSync(target, 'a');
    }
  }

  /**
   * Opens the file path again and writes every later batch there (logrotate: after a rename,
   * the old descriptor would keep writing to the rotated file). False for stdout or a sink.
   * Throws when the path cannot be opened; writing then goes on to the old descriptor.
   */
  reopen(): boolean {
    if (this.options.sink || this.target === undefined) return false;
    fs.mkdirSync(path.dirname(this.target), { recursive: true });
    const fd = fs.openSync(this.target, 'a');
    const old = this.fd;
    this.fd = fd;
    if (this.writing) this.retired.push(old);
    else fs.close(old, () => undefined);
    return true;
  }

  /** `line` ends in '\n'. Never throws and never blocks the caller. */
  write(line: string): void {
    if (this.pendingBytes > MAX_PENDING_BYTES) {
      this.droppedAtTrouble ??= this.dropped;
      this.dropped++;
      if (this.droppedSinceReport++ === 0) this.options.onTrouble?.({ dropped: this.dropped });
      return;
    }
    this.pendingBytes += line.length;
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

  private readonly drain = (): void => {
    this.scheduled = false;
    if (this.writing) return;
    if (this.pending.length === 0) return this.settle();
    const batch = this.pending.join('');
    this.inFlightLines = this.pending.length;
    this.pending = [];
    this.pendingBytes -= batch.length;
    this.writing = true;
    const sink = this.options.sink;
    if (sink) sink(batch, (err) => this.written(err, 0, Buffer.alloc(0)));
    else {
      this.batchFd = this.fd;
      this.writeAll(Buffer.from(batch, 'utf8'));
    }
  };

  private writeAll(buf: Buffer): void {
    fs.write(this.batchFd, buf, 0, buf.length, null, (err, written) =>
      this.written(err, written, buf),
    );
  }

  /** The end of one write (or sink hand-over): retry, continue a partial write, or move on. */
  private written(err: NodeJS.ErrnoException | null, written: number, buf: Buffer): void {
    if (err) {
      if (err.code === 'EAGAIN' || err.code === 'EBUSY') {
        setTimeout(() => this.writeAll(buf), RETRY_MS);
        return;
      }
      this.droppedAtTrouble ??= this.dropped;
      this.dropped += this.pending.length + this.inFlightLines;
      this.pending = [];
      this.pendingBytes = 0;
      if (!this.failing) {
        this.failing = true;
        this.options.onTrouble?.({ error: err, dropped: this.dropped });
      }
    } else if (written < buf.length) {
      this.writeAll(buf.subarray(written));
      return;
    } else {
      this.failing = false;
      this.droppedSinceReport = 0;
      if (this.droppedAtTrouble !== undefined) {
        const lost = this.dropped - this.droppedAtTrouble;
        this.droppedAtTrouble = undefined;
        this.options.onRecovered?.(lost);
      }
    }
    this.writing = false;
    if (this.retired.length > 0) {
      for (const fd of this.retired) fs.close(fd, () => undefined);
      this.retired = [];
    }
    if (this.pending.length > 0) this.drain();
    else this.settle();
  }

  private settle(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
