export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  readonly failureThreshold: number;
  /** First wait before a probe; doubles on each failed probe up to maxCooldownMs. */
  readonly cooldownMs: number;
  readonly maxCooldownMs: number;
  readonly now?: () => number;
  /** Called once per state change, never per request. */
  readonly onChange?: (from: BreakerState, to: BreakerState, lastError: string | undefined) => void;
}

/**
 * A circuit breaker for the limit backend: once it keeps failing, checks stop waiting for it
 * (each would cost the full time budget) and one probe at a time tests whether it is back.
 */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private cooldownMs: number;
  private openUntil = 0;
  private lastError: string | undefined;
  private readonly now: () => number;

  constructor(private readonly options: BreakerOptions) {
    this.cooldownMs = options.cooldownMs;
    this.now = options.now ?? (() => performance.now());
  }

  get state(): BreakerState {
    return this.current;
  }

  /** Whether a request may go to the backend now. In half-open only the one probe may. */
  tryAcquire(): boolean {
    if (this.current === 'closed') return true;
    if (this.current === 'open' && this.now() >= this.openUntil) {
      this.transition('half-open');
      return true;
    }
    return false;
  }

  success(): void {
    this.failures = 0;
    if (this.current !== 'closed') {
      this.cooldownMs = this.options.cooldownMs;
      this.transition('closed');
    }
  }

  failure(error: string): void {
    this.lastError = error;
    if (this.current === 'half-open') {
      this.cooldownMs = Math.min(this.cooldownMs * 2, this.options.maxCooldownMs);
      this.open();
    } else if (this.current === 'closed' && ++this.failures >= this.options.failureThreshold) {
      this.open();
    }
  }

  /** Opens at once, e.g. when the connection is known to be down. */
  trip(error: string): void {
    this.lastError = error;
    if (this.current === 'closed') this.open();
  }

  private open(): void {
    this.failures = 0;
    this.openUntil = this.now() + this.cooldownMs;
    this.transition('open');
  }

  private transition(to: BreakerState): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.options.onChange?.(from, to, this.lastError);
  }
}
