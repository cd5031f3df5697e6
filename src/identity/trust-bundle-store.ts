import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileErrorText } from '../util/file-error';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { parseTrustBundle, refreshHintSeconds, type TrustBundle } from './trust-bundle';

const DEFAULT_REFRESH_S = 300;
const MIN_REFRESH_S = 1;
const MAX_REFRESH_S = 24 * 3600;
const RETRY_S = 30;
const MAX_BUNDLE_BYTES = 1024 * 1024;

/**
 * The https_web profile fetches bundles over TLS with Web PKI: a plain-http endpoint would let
 * anyone on the path hand us keys. Loopback is the exception (a node-local agent; nothing
 * on the network can change what it serves).
 */
export function endpointProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a valid URL';
  }
  if (parsed.username || parsed.password) return 'a bundle endpoint URL must not carry credentials';
  if (parsed.protocol === 'https:') return undefined;
  const host = parsed.hostname;
  if (host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host))
    return undefined;
  return 'a bundle endpoint must be https:// (the https_web profile); plain http is accepted on loopback only';
}

/** The body as text, refused once it passes `max` bytes rather than after reading it all. */
async function readBounded(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > max) throw new Error('bundle is too large');
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The trust bundles in force, one per trust domain, kept current off the hot path: a file is
 * read again when it changes; a bundle endpoint URL is fetched again on its
 * `spiffe_refresh_hint`. A failed refresh keeps the last good bundle (logged once per failure
 * kind). Checks only ever read `bundles`, a Map whose entries are replaced whole.
 */
export class TrustBundleStore {
  readonly bundles = new Map<string, TrustBundle>();
  /** One refresh timer per bundle endpoint, replaced at each refresh. */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly watchers: FSWatcher[] = [];
  private readonly lastError = new Map<string, string>();

  private constructor(private readonly log: Logger) {}

  /** Files must load now (a typo should stop the server); URLs are fetched, and retried, in the background. */
  static async open(
    sources: readonly { domain: string; source: string }[],
    log: Logger,
    options: { retryMs?: number } = {},
  ): Promise<TrustBundleStore> {
    const store = new TrustBundleStore(log);
    for (const { domain, source } of sources) {
      if (/^https?:\/\//.test(source)) {
        const refused = endpointProblem(source);
        if (refused) throw new Error(`${domain}=${source}: ${refused}`);
        const ok = await store.fetchUrl(domain, source, options.retryMs);
        if (!ok)
          log.warn(
            { domain, source },
            'trust bundle endpoint not reachable yet; callers of this domain get 401 until it is',
          );
      } else {
        const text = await readFile(source, 'utf8').catch((err: unknown) => {
          throw new Error(fileErrorText(err, `trust bundle of ${domain}`, source));
        });
        store.bundles.set(domain, parseTrustBundle(domain, text, source));
        store.watchFile(domain, source);
      }
    }
    return store;
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const w of this.watchers) w.close();
  }

  private watchFile(domain: string, file: string): void {
    let timer: NodeJS.Timeout | undefined;
    const reload = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        readFile(file, 'utf8')
          .then(
            (text) => this.accept(domain, parseTrustBundle(domain, text, file), file),
            (err: Error) => this.failed(domain, file, err.message),
          )
          .catch((err: Error) => this.failed(domain, file, err.message));
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
      const res = await fetch(url, {
        signal: AbortSignal.timeout(10_000),
        headers: { accept: 'application/json' },
        redirect: 'error',
      });
      if (res.status !== 200) throw new Error(`answered ${res.status}`);
      const text = await readBounded(res, MAX_BUNDLE_BYTES);
      this.accept(domain, parseTrustBundle(domain, text, url), url);
      nextS = Math.min(
        Math.max(refreshHintSeconds(text) ?? DEFAULT_REFRESH_S, MIN_REFRESH_S),
        MAX_REFRESH_S,
      );
      ok = true;
    } catch (err) {
      this.failed(domain, url, (err as Error).message);
    }
    const timer = setTimeout(
      () => void this.fetchUrl(domain, url, retryMs),
      ok ? nextS * 1000 : (retryMs ?? RETRY_S * 1000),
    );
    timer.unref();
    this.timers.set(`${domain} ${url}`, timer);
    return ok;
  }

  private accept(domain: string, bundle: TrustBundle, source: string): void {
    const had = this.bundles.has(domain);
    this.bundles.set(domain, bundle);
    this.lastError.delete(domain);
    this.log.info(
      { domain, source, authorities: bundle.authorities.length, jwtKeys: bundle.jwtKeys.size },
      had ? 'trust bundle refreshed' : 'trust bundle loaded',
    );
  }

  private failed(domain: string, source: string, message: string): void {
    if (this.lastError.get(domain) !== message) {
      this.log.error(
        {
          domain,
          source,
          err: message,
          keeping: this.bundles.has(domain) ? 'last good bundle' : 'none',
        },
        'trust bundle refresh failed',
      );
    }
    this.lastError.set(domain, message);
  }
}
