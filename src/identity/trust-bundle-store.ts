import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { parseTrustBundle, refreshHintSeconds, type TrustBundle } from './trust-bundle';

const DEFAULT_REFRESH_S = 300;
const MIN_REFRESH_S = 1;
const MAX_REFRESH_S = 24 * 3600;
const RETRY_S = 30;

/**
 * The trust bundles in force, one per trust domain, kept current off the hot path: a file is
 * read again when it changes; a bundle endpoint URL is fetched again on its
 * `spiffe_refresh_hint`. A failed refresh keeps the last good bundle (logged once per failure
 * kind). Checks only ever read `bundles`, a Map whose entries are replaced whole.
 */
export class TrustBundleStore {
  readonly bundles = new Map<string, TrustBundle>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly watchers: FSWatcher[] = [];
  private readonly lastError = new Map<string, string>();

  private constructor(private readonly log: Logger) {}

  /** Files must load now (a typo should stop the server); URLs are fetched, and retried, in the background. */
  static async open(sources: readonly { domain: string; source: string }[], log: Logger, options: { retryMs?: number } = {}): Promise<TrustBundleStore> {
    const store = new TrustBundleStore(log);
    for (const { domain, source } of sources) {
      if (/^https?:\/\//.test(source)) {
        const ok = await store.fetchUrl(domain, source, options.retryMs);
        if (!ok) log.warn({ domain, source }, 'trust bundle endpoint not reachable yet; callers of this domain get 401 until it is');
      } else {
        store.bundles.set(domain, parseTrustBundle(domain, await readFile(source, 'utf8'), source));
        store.watchFile(domain, source);
      }
    }
    return store;
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    for (const w of this.watchers) w.close();
  }

  private watchFile(domain: string, file: string): void {
    let timer: NodeJS.Timeout | undefined;
    const reload = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        readFile(file, 'utf8').then(
          (text) => this.accept(domain, parseTrustBundle(domain, text, file), file),
          (err: Error) => this.failed(domain, file, err.message),
        ).catch((err: Error) => this.failed(domain, file, err.message));
      }, 200);
      timer.unref();
    };
    // The directory too: rotations usually replace the file (rename), which ends a file watch.
    for (const target of [file, path.dirname(file)]) {
      try {
        const w = watch(target, { persistent: false }, (_event, name) => {
          if (target === file || name === path.basename(file)) reload();
        });
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        /* watching is best effort; the file was read at start */
      }
    }
  }

  private async fetchUrl(domain: string, url: string, retryMs?: number): Promise<boolean> {
    let nextS = RETRY_S;
    let ok = false;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000), headers: { accept: 'application/json' } });
      if (res.status !== 200) throw new Error(`answered ${res.status}`);
      const text = await res.text();
      if (text.length > 1024 * 1024) throw new Error('bundle is too large');
      this.accept(domain, parseTrustBundle(domain, text, url), url);
      nextS = Math.min(Math.max(refreshHintSeconds(text) ?? DEFAULT_REFRESH_S, MIN_REFRESH_S), MAX_REFRESH_S);
      ok = true;
    } catch (err) {
      this.failed(domain, url, (err as Error).message);
    }
    const timer = setTimeout(() => void this.fetchUrl(domain, url, retryMs), ok ? nextS * 1000 : (retryMs ?? RETRY_S * 1000));
    timer.unref();
    this.timers.push(timer);
    return ok;
  }

  private accept(domain: string, bundle: TrustBundle, source: string): void {
    const had = this.bundles.has(domain);
    this.bundles.set(domain, bundle);
    this.lastError.delete(domain);
    this.log.info({ domain, source, authorities: bundle.authorities.length, jwtKeys: bundle.jwtKeys.size }, had ? 'trust bundle refreshed' : 'trust bundle loaded');
  }

  private failed(domain: string, source: string, message: string): void {
    if (this.lastError.get(domain) !== message) {
      this.log.error({ domain, source, err: message, keeping: this.bundles.has(domain) ? 'last good bundle' : 'none' }, 'trust bundle refresh failed');
    }
    this.lastError.set(domain, message);
  }
}
