import { hash } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { describeBackendError, EpisodeLog } from '../util/episode-log';
import { fileErrorText } from '../util/file-error';
import {
  BundleError,
  MAX_BUNDLE_BYTES,
  removeBundleDir,
  unpackBundle,
  verifyBundle,
  type BundlePayload,
} from './bundle';

/** The source could not be read (network, HTTP status, file system): an episode, not a refusal. */
class BundleFetchError extends BundleError {}

/** Why a fetched bundle was not activated: a bounded label set for the metric. */
export type BundleRefusal = 'unverified' | 'not_newer' | 'invalid' | 'tests_fail' | 'not_loaded';

function refusalOf(message: string): BundleRefusal {
  if (/not newer|older than/.test(message)) return 'not_newer';
  if (/tests do not pass/.test(message)) return 'tests_fail';
  if (/policies are invalid|does not match its content/.test(message)) return 'invalid';
  if (/could not be loaded/.test(message)) return 'not_loaded';
  return 'unverified';
}

export interface ActiveBundle {
  readonly dir: string;
  readonly payload: BundlePayload;
}

/**
 * Fetches a signed bundle from a file or URL, and polls it: ETag-aware for URLs (a 304 costs
 * nothing), size and mtime for files. A new bundle is activated only when its signature
 * verifies with the operator's key, its revision is higher than the active one's, and its
 * own policy tests pass; anything else is refused and logged once per distinct failure,
 * while the active bundle keeps serving.
 */
export class BundlePoller {
  private etag: string | undefined;
  private fileStamp: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastProblem: string | undefined;
  /** SHA-256 of the last bundle text refused: the same bytes are not unpacked and tried again. */
  private refusedDigest: string | undefined;
  private polling = false;
  private readonly fetchEpisode: EpisodeLog;
  private refusals: Counter<'reason'> | undefined;
  private revisionGauge: Gauge | undefined;
  private fetchFailures: Counter | undefined;
  active: ActiveBundle | undefined;

  /**
   * `stateFile`: where the highest activated revision is kept, so that a restart (or a new
   * replica sharing the volume) never goes back to an older, still correctly signed bundle.
   */
  constructor(
    private readonly location: string,
    private readonly publicKeyPem: string,
    private readonly log: Logger,
    private readonly stateFile?: string,
  ) {
    this.fetchEpisode = new EpisodeLog(log, {
      failing: 'bundle source cannot be read; the active bundle keeps serving',
      recovered: 'bundle source readable again',
      unit: 'failedPolls',
    });
  }

  /** Bundle metrics on the registry that /metrics serves (the primary's with --workers). */
  registerMetrics(registry: Registry): void {
    const registers = [registry];
    this.refusals = new Counter({
      name: 'gatehouse_bundle_refusals_total',
      help: 'Fetched bundles not activated, by reason (unverified, not_newer, invalid, tests_fail, not_loaded).',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of [
      'unverified',
      'not_newer',
      'invalid',
      'tests_fail',
      'not_loaded',
    ] as const)
      this.refusals.inc({ reason }, 0);
    this.fetchFailures = new Counter({
      name: 'gatehouse_bundle_fetch_failures_total',
      help: 'Bundle polls that could not read the source (network, HTTP status, file system).',
      registers,
    });
    this.revisionGauge = new Gauge({
      name: 'gatehouse_bundle_revision',
      help: 'Revision of the active policy bundle.',
      registers,
      aggregator: 'max',
    });
    if (this.active) this.revisionGauge.set(this.active.payload.revision);
  }

  /** Removes the active bundle's unpacked folder; call once nothing will load from it again. */
  async removeFiles(): Promise<void> {
    if (this.active) await removeBundleDir(this.active.dir);
  }

  /** The first bundle; failing here means `serve` refuses to start. */
  async initial(): Promise<ActiveBundle> {
    const text = await this.fetch();
    if (text === undefined) throw new BundleError('bundle source returned nothing');
    const payload = await verifyBundle(text, this.publicKeyPem);
    const seen = await this.readState();
    if (seen !== undefined) {
      if (payload.revision < seen.revision) {
        throw new BundleError(
          `bundle revision ${payload.revision} is older than revision ${seen.revision} already activated here (${this.stateFile}); refused`,
        );
      }
      if (payload.revision === seen.revision && payload.version !== seen.version) {
        throw new BundleError(
          `bundle revision ${payload.revision} has different contents from the revision ${seen.revision} activated here before; refused`,
        );
      }
    }
    this.active = { dir: await unpackBundle(payload), payload };
    await this.writeState(payload);
    return this.active;
  }

  private async readState(): Promise<{ revision: number; version: string } | undefined> {
    if (this.stateFile === undefined) return undefined;
    let text: string;
    try {
      text = await readFile(this.stateFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // first start
      throw new BundleError(fileErrorText(err, 'bundle state', this.stateFile));
    }
    try {
      const state = JSON.parse(text) as { revision?: unknown; version?: unknown };
      if (
        typeof state.revision === 'number' &&
        Number.isInteger(state.revision) &&
        typeof state.version === 'string'
      ) {
        return { revision: state.revision, version: state.version };
      }
    } catch {
      /* reported below */
    }
    // A damaged state file must not silently reopen the door to rollbacks.
    throw new BundleError(
      `bundle state ${this.stateFile} is not valid; remove it only if you know the newest revision is being served`,
    );
  }

  /** Written atomically (temp file, then rename), after the bundle is serving. */
  private async writeState(payload: BundlePayload): Promise<void> {
    if (this.stateFile === undefined) return;
    const tmp = `${this.stateFile}.${process.pid}.tmp`;
    await writeFile(
      tmp,
      `${JSON.stringify({ revision: payload.revision, version: payload.version, activatedAt: new Date().toISOString() })}\n`,
    );
    await rename(tmp, this.stateFile);
  }

  /** Polls every `intervalMs`; `activate` switches the server to the new directory. */
  start(intervalMs: number, activate: (bundle: ActiveBundle) => Promise<boolean>): void {
    const tick = (): void => {
      this.timer = setTimeout(() => void this.pollOnce(activate).finally(tick), intervalMs);
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  async pollOnce(activate: (bundle: ActiveBundle) => Promise<boolean>): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      let text: string | undefined;
      try {
        text = await this.fetch();
        this.fetchEpisode.recovered();
      } catch (err) {
        if (err instanceof BundleError && !(err instanceof BundleFetchError)) {
          this.refuse(err.message, undefined); // read fine, but not a bundle we take (too large)
          return;
        }
        this.fetchFailures?.inc();
        // fetch() reports network failures as TypeError('fetch failed') with the errno in `cause`.
        this.fetchEpisode.failed(
          err instanceof BundleFetchError
            ? err.message
            : describeBackendError((err as { cause?: unknown }).cause ?? err),
        );
        return;
      }
      if (text === undefined) return; // unchanged
      const digest = hash('sha256', text, 'hex');
      if (digest === this.refusedDigest) return; // refused before, byte for byte: nothing new to try
      await this.consider(text, digest, activate);
    } finally {
      this.polling = false;
    }
  }

  private async consider(
    text: string,
    digest: string,
    activate: (bundle: ActiveBundle) => Promise<boolean>,
  ): Promise<void> {
    let unpacked: string | undefined;
    try {
      const payload = await verifyBundle(text, this.publicKeyPem);
      const current = this.active!.payload;
      if (payload.revision === current.revision && payload.version === current.version) return;
      if (payload.revision <= current.revision) {
        throw new BundleError(
          `bundle revision ${payload.revision} is not newer than the active ${current.revision}; refused`,
        );
      }
      const bundle = { dir: (unpacked = await unpackBundle(payload)), payload };
      if (!(await activate(bundle)))
        throw new BundleError(`bundle revision ${payload.revision} could not be loaded`);
      const previous = this.active;
      this.active = bundle;
      unpacked = undefined; // served now: only replacing it may remove it
      this.lastProblem = undefined;
      this.refusedDigest = undefined;
      this.revisionGauge?.set(payload.revision);
      // The bundle is active whether or not its revision could be recorded; a restart then
      // accepts an older revision once (the anti-rollback floor is what is lost), so say so.
      await this.writeState(payload).catch((err: unknown) =>
        this.log.error(
          { err: fileErrorText(err, 'bundle state', this.stateFile), revision: payload.revision },
          'bundle active, but its revision could not be recorded',
        ),
      );
      // Every process now serves the new folder; the old one is nobody's any more.
      if (previous && previous.dir !== bundle.dir) await removeBundleDir(previous.dir);
      this.log.info({ revision: payload.revision, version: payload.version }, 'bundle activated');
    } catch (err) {
      if (unpacked !== undefined) await removeBundleDir(unpacked);
      this.refuse((err as Error).message, digest);
    }
  }

  /** Logged once per cause; the same bytes are not tried again, a changed bundle is. */
  private refuse(message: string, digest: string | undefined): void {
    this.refusals?.inc({ reason: refusalOf(message) });
    if (message !== this.lastProblem)
      this.log.error(
        { err: message, activeRevision: this.active?.payload.revision },
        'bundle not activated',
      );
    this.lastProblem = message;
    this.refusedDigest = digest;
  }

  /** The bundle text if it changed since the last fetch, else undefined. */
  private async fetch(): Promise<string | undefined> {
    if (/^https?:\/\//.test(this.location)) {
      const res = await fetch(this.location, {
        headers: this.etag ? { 'if-none-match': this.etag } : {},
        signal: AbortSignal.timeout(10_000),
      });
      if (res.status === 304) return undefined;
      if (res.status !== 200) throw new BundleFetchError(`bundle URL answered ${res.status}`);
      const length = Number(res.headers.get('content-length') ?? 0);
      if (length > MAX_BUNDLE_BYTES) throw new BundleError('bundle is too large');
      const text = await res.text();
      this.etag = res.headers.get('etag') ?? undefined;
      return text;
    }
    const info = await stat(this.location).catch((err: unknown) => {
      throw new BundleFetchError(fileErrorText(err, 'the bundle file'));
    });
    const stamp = `${info.size}:${info.mtimeMs}`;
    if (stamp === this.fileStamp) return undefined;
    if (info.size > MAX_BUNDLE_BYTES) throw new BundleError('bundle is too large');
    const text = await readFile(this.location, 'utf8').catch((err: unknown) => {
      throw new BundleFetchError(fileErrorText(err, 'the bundle file'));
    });
    // Only a file that was read is "unchanged" next time; a failed read is tried again.
    this.fileStamp = stamp;
    return text;
  }
}
