import { Counter, Gauge, type Registry } from 'prom-client';

interface Scraped {
  readonly name: string;
  readonly help: string;
  readonly registers: Registry[];
  /** How a primary combines its workers' values (prom-client's default sums). */
  readonly aggregator?: 'sum' | 'max';
}

/** A gauge whose value is read from the process at scrape time: nothing on the hot path. */
export function scrapedGauge(spec: Scraped, read: () => number): Gauge {
  return new Gauge({
    ...spec,
    collect() {
      this.set(read());
    },
  });
}

/** A counter that follows a running total kept elsewhere (it only ever moves forward). */
export function scrapedCounter(spec: Scraped, total: () => number): Counter {
  let reported = 0;
  return new Counter({
    ...spec,
    collect() {
      const now = total();
      if (now > reported) this.inc(now - reported);
      reported = now;
    },
  });
}
