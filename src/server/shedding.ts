/**
 * Decides, before a check is decided, whether it is worth deciding. Envoy gives each check a
 * deadline (`grpc_service.timeout`, sent as grpc-timeout) and applies `status_on_error` when it
 * passes; an answer after that is CPU spent for nobody, taken from the checks that can still
 * be answered in time. So:
 *  - a check whose deadline has passed, or is nearer than a check usually takes, is not
 *    decided (DEADLINE_EXCEEDED);
 *  - while too many checks are already in flight (waiting on Redis, say), or the event loop
 *    lags so far behind that queued checks are going stale, new checks are refused at once
 *    (RESOURCE_EXHAUSTED) instead of queueing without bound. Envoy then fails closed as its
 *    `failure_mode_allow: false` says.
 */
export interface SheddingOptions {
  /** Checks being decided at once per process; 0 = unbounded. */
  readonly maxInFlight: number;
  /** Refuse new checks once the event loop has lagged more than this (ms) for OVERLOAD_SUSTAIN_MS; 0 = never. */
  readonly maxEventLoopLagMs: number;
}

export const DEFAULT_SHEDDING: SheddingOptions = { maxInFlight: 1024, maxEventLoopLagMs: 100 };

export type ShedReason = 'deadline' | 'in_flight' | 'event_loop_lag';

const LAG_SAMPLE_MS = 20;
/**
 * How long the lag must stay over the bound before checks are refused: a burst, one long GC
 * pause or a CFS throttle period passes without shedding; a loop that stays behind does not.
 */
export const OVERLOAD_SUSTAIN_MS = 500;
/** Weight of the newest duration in the running estimate of how long a check takes. */
const DURATION_WEIGHT = 0.05;

/**
 * Lag that means checks are queueing (each event-loop turn takes longer than a check should
 * wait), well below the shedding bound; held for PRESSURE_HOLD_MS once seen.
 */
const PRESSURE_LAG_MS = 50;
const PRESSURE_HOLD_MS = 1000;

export class LoadShedder {
  private inFlightCount = 0;
  private pressuredUntil = 0;
  /** performance.now() since which every lag sample has been over the bound; undefined when the last was not. */
  private laggingSince: number | undefined;
  private overloaded = false;
  private expectedDurationMs = 0;
  private readonly sampler: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: SheddingOptions,
    private readonly onShed: (reason: ShedReason) => void = () => undefined,
  ) {
    if (options.maxEventLoopLagMs > 0) {
      let expected = performance.now() + LAG_SAMPLE_MS;
      this.sampler = setInterval(() => {
        const now = performance.now();
        if (now - expected > PRESSURE_LAG_MS) this.pressuredUntil = now + PRESSURE_HOLD_MS;
        if (now - expected > options.maxEventLoopLagMs) this.laggingSince ??= now;
        else this.laggingSince = undefined;
        this.overloaded =
          this.laggingSince !== undefined && now - this.laggingSince >= OVERLOAD_SUSTAIN_MS;
        expected = now + LAG_SAMPLE_MS;
      }, LAG_SAMPLE_MS);
      this.sampler.unref();
    }
  }

  /**
   * The event loop has lately fallen behind: the listener asks clients for fewer concurrent
   * streams, so the excess waits in the proxy (under its own timeout) instead of in front of us.
   */
  get pressured(): boolean {
    return performance.now() < this.pressuredUntil;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Why a check arriving now, due by `deadlineMs` (epoch ms; Infinity without one), is not decided; undefined to go ahead. */
  refuse(deadlineMs: number): ShedReason | undefined {
    let reason: ShedReason | undefined;
    if (deadlineMs !== Infinity && deadlineMs - Date.now() <= this.expectedDurationMs)
      reason = 'deadline';
    else if (this.options.maxInFlight > 0 && this.inFlightCount >= this.options.maxInFlight)
      reason = 'in_flight';
    else if (this.overloaded) reason = 'event_loop_lag';
    if (reason !== undefined) this.onShed(reason);
    return reason;
  }

  /** A check started; call the returned function when it is answered. */
  begin(): () => void {
    this.inFlightCount++;
    const started = performance.now();
    return () => {
      this.inFlightCount--;
      this.expectedDurationMs +=
        (performance.now() - started - this.expectedDurationMs) * DURATION_WEIGHT;
    };
  }

  close(): void {
    if (this.sampler) clearInterval(this.sampler);
  }
}
