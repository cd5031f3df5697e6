import { availableParallelism } from 'node:os';
import { defaultWorkers } from '../../src/cluster/cpus';

const files =
  (map: Record<string, string>) =>
  (path: string): string => {
    if (path in map) return map[path]!;
    throw new Error('ENOENT');
  };

describe('default worker count', () => {
  const cores = availableParallelism();
  test.each([
    ['no cgroup files', {}, cores],
    ['cgroup v2 without a quota', { '/sys/fs/cgroup/cpu.max': 'max 100000\n' }, cores],
    ['cgroup v2 quota of half a core', { '/sys/fs/cgroup/cpu.max': '50000 100000\n' }, 1],
    [
      'cgroup v2 quota of 1.5 cores',
      { '/sys/fs/cgroup/cpu.max': '150000 100000\n' },
      Math.min(cores, 2),
    ],
    [
      'cgroup v2 quota larger than the machine',
      { '/sys/fs/cgroup/cpu.max': '6400000 100000\n' },
      cores,
    ],
    [
      'cgroup v1 quota of one core',
      {
        '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000',
        '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000',
      },
      1,
    ],
    [
      'cgroup v1 without a quota',
      {
        '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1',
        '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000',
      },
      cores,
    ],
  ])('%s', (_name, map, expected) => {
    expect(defaultWorkers(files(map))).toBe(expected);
  });
});
