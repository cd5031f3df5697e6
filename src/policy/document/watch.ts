import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';

/**
 * Calls `onChange` once a burst of changes under `dir` has been quiet for `debounceMs`, so
 * an editor's save or a ConfigMap's symlink swap triggers one reload, not ten.
 */
export function watchPolicyDir(
  dir: string,
  onChange: () => void,
  log: Logger,
  debounceMs = 250,
): { close(): void } {
  let timer: NodeJS.Timeout | undefined;
  const changed = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  };
  // Two watchers: the recursive one sees sub-directories, but on Linux (Node 20) it misses a
  // rename of a top-level symlink, which is exactly how the kubelet swaps a ConfigMap's ..data.
  const watchers: FSWatcher[] = [];
  for (const recursive of [false, true]) {
    try {
      const watcher = watch(dir, { recursive, persistent: false }, changed);
      watcher.on('error', (err) =>
        log.warn({ err: err.message, dir }, 'policy directory watch failed; SIGHUP still reloads'),
      );
      watchers.push(watcher);
    } catch (err) {
      log.warn(
        { err: (err as Error).message, dir, recursive },
        'cannot watch the policy directory; SIGHUP still reloads',
      );
    }
  }
  return {
    close: () => {
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
