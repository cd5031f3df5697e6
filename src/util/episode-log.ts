import type { Logger } from 'pino';

/**
 * One log line when a background dependency starts failing and one when it works again,
 * with how long it lasted and how much it affected in between, instead of a line per failed
 * operation (a frozen Redis would otherwise log once per denial). The cause in the opening
 * line is Gatehouse's own wording (see `describeBackendError`), never a client library's.
 */
export class EpisodeLog {
  private startedAt: number | undefined;
  private cause = '';
  private count = 0;

  /**
   * `failing`: the opening message ("quarantine state unavailable: …"); `recovered`: the
   * closing one; `unit`: the field of the closing line that carries the count ("failedOperations").
   */
  constructor(
    private readonly log: Logger,
    private readonly messages: {
      readonly failing: string;
      readonly recovered: string;
      readonly unit: string;
    },
    private readonly now: () => number = Date.now,
  ) {}

  get open(): boolean {
    return this.startedAt !== undefined;
  }

  /** A failure: the first of an episode is logged; the rest are only counted. */
  failed(cause: string, affected = 1): void {
    this.count += affected;
    if (this.startedAt !== undefined) return;
    this.startedAt = this.now();
    this.cause = cause;
    this.log.warn({ cause }, this.messages.failing);
  }

  /** A success: closes an open episode with its length and count; nothing otherwise. */
  recovered(extra: Record<string, unknown> = {}): void {
    if (this.startedAt === undefined) return;
    const durationMs = this.now() - this.startedAt;
    this.log.info(
      { cause: this.cause, durationMs, [this.messages.unit]: this.count, ...extra },
      this.messages.recovered,
    );
    this.startedAt = undefined;
    this.count = 0;
  }
}

/**
 * A backend error in our words. Client libraries' texts ("Reached the max retries per request
 * limit", "Stream isn't writeable and enableOfflineQueue options is false") describe their
 * internals, not what an operator should look at; errno codes are kept, they are precise.
 */
export function describeBackendError(err: unknown): string {
  const error = err instanceof Error ? err : new Error(String(err));
  const code = (error as NodeJS.ErrnoException).code;
  const message = error.message;
  if (/did not answer within/.test(message) || /timed? ?out/i.test(message) || code === 'ETIMEDOUT')
    return 'no answer in time';
  if (code === 'ECONNREFUSED' || /ECONNREFUSED/.test(message)) return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || /ENOTFOUND|EAI_AGAIN/.test(message))
    return 'host name does not resolve';
  if (code === 'ECONNRESET' || /ECONNRESET/.test(message)) return 'connection reset';
  if (
    /max retries per request|Connection is closed|enableOfflineQueue|Stream isn't writeable|not connected/i.test(
      message,
    )
  )
    return 'not connected';
  if (/breaker open/.test(message)) return 'not connected';
  if (/NOAUTH|WRONGPASS|NOPERM/.test(message)) return 'authentication refused';
  if (/READONLY/.test(message)) return 'server is a read-only replica';
  if (/OOM/.test(message)) return 'server out of memory';
  if (/CLUSTERDOWN|MOVED|ASK|TRYAGAIN|startup nodes|slots cache/.test(message))
    return 'cluster unavailable';
  if (code === 'ENOSPC') return 'no space left on device';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EPIPE' || code === 'EBADF') return 'target closed';
  if (code === 'EIO') return 'input/output error';
  if (code !== undefined) return code;
  // Redis's own refusal: its first word (ERR, NOSCRIPT, BUSY…) names the kind; the rest may quote our arguments.
  if (error.name === 'ReplyError') return `Redis refused the command (${message.split(' ', 1)[0]})`;
  // Gatehouse's own errors ("quarantine: unreadable script reply") are already in its words.
  if (error.constructor === Error) return message;
  return 'unexpected error';
}
