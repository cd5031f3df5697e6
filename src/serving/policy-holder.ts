import type { Logger } from 'pino';
import { ReloadHistory } from '../policy/history';
import { loadPolicyDir } from '../policy/load';
import { formatProblem, wholeFileError, type PolicyProblem } from '../policy/document/problems';
import { describePolicySet, type PolicySet } from '../policy/types';

export class PolicyLoadError extends Error {
  constructor(readonly problems: readonly PolicyProblem[]) {
    super(`invalid policies:\n${problems.map(formatProblem).join('\n')}`);
  }
}

export interface ReloadResult {
  readonly ok: boolean;
  /** The version served after this reload: the new one, or the one kept. */
  readonly version: string;
  /** The directory this reload loaded (the latest one asked for when reloads coalesced). */
  readonly directory: string;
  readonly problems: readonly PolicyProblem[];
}

/** What the owner does beside serving: metrics, telling workers. */
export interface PolicyHolderEvents {
  /** A new set is served; `directoryChanged` when it came from another directory (a new bundle). */
  readonly applied?: (set: PolicySet, previous: PolicySet, directoryChanged: boolean) => void;
  readonly rejected?: (problems: readonly PolicyProblem[], kept: PolicySet) => void;
}

/**
 * The policy set being served and how it changes: reloads of the directory, switches to another
 * directory (a new bundle), and the history an operator reads at /v1/policy. The single-process
 * server and the primary of `--workers N` each own one.
 *
 * Reloads coalesce: while one runs, any number of requests (file changes, SIGHUP, bundles) share
 * exactly one more, which starts when the running one ends and loads the latest directory asked
 * for. So a burst costs at most two loads, and an older version is never applied after a newer.
 */
export class PolicyHolder {
  readonly history = new ReloadHistory();
  private set: PolicySet;
  private servedDir: string;
  /** The directory the next reload loads: the served one, or a bundle's waiting to be switched to. */
  private wantedDir: string;
  private running: Promise<ReloadResult> | undefined;
  private queued: Promise<ReloadResult> | undefined;
  private events: PolicyHolderEvents = {};

  private constructor(
    set: PolicySet,
    dir: string,
    private readonly log: Logger,
  ) {
    this.set = set;
    this.servedDir = dir;
    this.wantedDir = dir;
    this.history.add('loaded', set.version);
  }

  /** Loads `dir` once; invalid policies refuse the start with every problem (PolicyLoadError). */
  static async load(dir: string, log: Logger): Promise<PolicyHolder> {
    const loaded = await loadPolicyDir(dir);
    if (!loaded.ok) throw new PolicyLoadError(loaded.problems);
    for (const w of loaded.warnings) log.warn(formatProblem(w));
    return new PolicyHolder(loaded.set, dir, log);
  }

  /** The owner's part of every later reload (one owner: a second call replaces the first). */
  listen(events: PolicyHolderEvents): void {
    this.events = events;
  }

  /** The set in force; one reference, swapped whole, so a check that reads it once never mixes versions. */
  get current(): PolicySet {
    return this.set;
  }

  /** The directory the current set was loaded from. */
  get directory(): string {
    return this.servedDir;
  }

  /** Loads the directory again, off the hot path; a bad version is rejected and the current one keeps serving. */
  reload(): Promise<ReloadResult> {
    if (this.queued) return this.queued;
    if (this.running) {
      const next = (): Promise<ReloadResult> => {
        this.queued = undefined;
        return this.start();
      };
      this.queued = this.running.then(next, next);
      return this.queued;
    }
    return this.start();
  }

  /** Serves the policies of another directory (a new bundle); on failure the current one stays. */
  switchDirectory(dir: string): Promise<ReloadResult> {
    this.wantedDir = dir;
    return this.reload();
  }

  /** What /v1/policy shows: the version served, its policies, and the reload history. */
  info(): Record<string, unknown> {
    return { ...describePolicySet(this.set, this.servedDir), history: this.history.records };
  }

  /** The `policies` line of readiness. */
  readinessCheck(): string {
    return `loaded ${this.set.version}`;
  }

  private start(): Promise<ReloadResult> {
    const running = this.reloadOnce(this.wantedDir).finally(() => {
      if (this.running === running) this.running = undefined;
    });
    this.running = running;
    return running;
  }

  private async reloadOnce(dir: string): Promise<ReloadResult> {
    const loaded = await loadPolicyDir(dir).catch((err: Error) => ({
      ok: false as const,
      problems: [wholeFileError(dir, err.message)],
    }));
    const kept = this.set;
    if (!loaded.ok) {
      // A rejected bundle is not tried again by the next file-change reload.
      if (this.wantedDir === dir) this.wantedDir = this.servedDir;
      const errors = loaded.problems.map(formatProblem);
      this.log.error({ problems: errors, keptVersion: kept.version }, 'policy reload rejected');
      this.history.add('rejected', kept.version, errors);
      this.events.rejected?.(loaded.problems, kept);
      return { ok: false, version: kept.version, directory: dir, problems: loaded.problems };
    }
    const directoryChanged = dir !== this.servedDir;
    // The git label is compared, not only the commit: an edit that keeps the meaning (and so the
    // version) still makes the checkout dirty, and audit records and /v1/policy must say so.
    if (
      !directoryChanged &&
      loaded.set.version === kept.version &&
      loaded.set.gitLabel === kept.gitLabel
    ) {
      return { ok: true, version: kept.version, directory: dir, problems: loaded.warnings };
    }
    this.set = loaded.set;
    this.servedDir = dir;
    this.history.add('reloaded', loaded.set.version);
    this.log.info(
      {
        previous: kept.version,
        version: loaded.set.version,
        ...(directoryChanged ? { directory: dir } : {}),
      },
      'policies reloaded',
    );
    this.events.applied?.(loaded.set, kept, directoryChanged);
    return { ok: true, version: loaded.set.version, directory: dir, problems: loaded.warnings };
  }
}
