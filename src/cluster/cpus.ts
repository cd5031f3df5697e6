import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/**
 * Workers by default: one per core the process may really use. In a container the node's
 * core count overstates it, so a CPU quota (cgroup v2 cpu.max, or v1 cfs quota) caps it.
 */
export function defaultWorkers(
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): number {
  const cores = availableParallelism();
  const quota = cgroupCpuQuota(readFile);
  return Math.max(1, quota === undefined ? cores : Math.min(cores, Math.ceil(quota)));
}

function cgroupCpuQuota(readFile: (path: string) => string): number | undefined {
  try {
    const [max, period] = readFile('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    if (max !== undefined && max !== 'max' && Number(period) > 0)
      return Number(max) / Number(period);
    if (max === 'max') return undefined;
  } catch {
    /* not cgroup v2 */
  }
  try {
    const quota = Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim());
    const period = Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim());
    if (quota > 0 && period > 0) return quota / period;
  } catch {
    /* no cgroup CPU controller visible */
  }
  return undefined;
}
