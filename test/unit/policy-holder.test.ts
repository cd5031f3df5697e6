import { execFileSync } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import * as load from '../../src/policy/load';
import type { PolicySet } from '../../src/policy/types';
import {
  PolicyHolder,
  PolicyLoadError,
  type PolicyHolderEvents,
} from '../../src/serving/policy-holder';
import { loadSet } from '../helpers/engine';
import { policyDir, servicePolicy } from '../helpers/policies';

const silent = pino({ level: 'silent' });

const policyFor = (caller: string): string =>
  servicePolicy(
    'svc',
    ['svc'],
    `    - name: r
      allow: [spiffe://shop.example/${caller}]`,
  );
const BROKEN = 'apiVersion: [broken';

const versionOf = async (caller: string): Promise<string> =>
  (await loadSet(policyDir({ 'svc.yaml': policyFor(caller) }))).version;

/** What the owner was told, in order. */
function recorder(): { events: PolicyHolderEvents; seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    events: {
      applied: (set: PolicySet, previous: PolicySet, directoryChanged: boolean) =>
        seen.push(`applied ${previous.version}->${set.version}${directoryChanged ? ' dir' : ''}`),
      rejected: (problems, kept) => seen.push(`rejected ${problems.length} kept ${kept.version}`),
    },
  };
}

/** Holds the next load after it has read the files, until `release` is called. */
function holdNextLoad(): { loaded: Promise<void>; release: () => void } {
  const original = load.loadPolicyDir;
  let loadedDone!: () => void;
  let release!: () => void;
  const loaded = new Promise<void>((r) => (loadedDone = r));
  const gate = new Promise<void>((r) => (release = r));
  jest.spyOn(load, 'loadPolicyDir').mockImplementationOnce(async (dir) => {
    const result = await original(dir);
    loadedDone();
    await gate;
    return result;
  });
  return { loaded, release };
}

afterEach(() => jest.restoreAllMocks());

describe('PolicyHolder', () => {
  test('refuses to start on invalid policies with every problem', async () => {
    const dir = policyDir({ 'svc.yaml': BROKEN });
    const refused = PolicyHolder.load(dir, silent);
    await expect(refused).rejects.toBeInstanceOf(PolicyLoadError);
    await expect(refused).rejects.toMatchObject({ problems: [{ severity: 'error' }] });
  });

  test('a burst of reloads during one in flight costs one more load, which sees the latest files', async () => {
    const dir = policyDir({ 'svc.yaml': policyFor('v0') });
    const { events, seen } = recorder();
    const holder = await PolicyHolder.load(dir, silent);
    holder.listen(events);
    const v0 = holder.current.version;

    writeFileSync(path.join(dir, 'svc.yaml'), policyFor('v1'));
    const held = holdNextLoad();
    const loads = jest.spyOn(load, 'loadPolicyDir');
    const first = holder.reload();
    await held.loaded; // the first reload has read v1 and is still running
    writeFileSync(path.join(dir, 'svc.yaml'), policyFor('v2'));
    const burst = [holder.reload(), holder.reload(), holder.reload()];
    writeFileSync(path.join(dir, 'svc.yaml'), policyFor('v3'));
    burst.push(holder.reload());
    expect(new Set(burst).size).toBe(1);
    expect(holder.current.version).toBe(v0);
    held.release();

    const [firstResult, burstResult] = [await first, await burst[0]];
    expect(loads).toHaveBeenCalledTimes(2);
    const [v1, v3] = [await versionOf('v1'), await versionOf('v3')];
    expect(firstResult).toMatchObject({ ok: true, version: v1 });
    expect(burstResult).toMatchObject({ ok: true, version: v3, directory: dir });
    expect(holder.current.version).toBe(v3);
    expect(seen).toEqual([`applied ${v0}->${v1}`, `applied ${v1}->${v3}`]);
    expect(holder.history.records.map((r) => [r.result, r.version])).toEqual([
      ['reloaded', v3],
      ['reloaded', v1],
      ['loaded', v0],
    ]);
  });

  test('a reload asked for after the queued one started waits for it: versions apply in order', async () => {
    const dir = policyDir({ 'svc.yaml': policyFor('v0') });
    const { events, seen } = recorder();
    const holder = await PolicyHolder.load(dir, silent);
    holder.listen(events);
    const applied: string[] = [];
    for (let n = 1; n <= 6; n++) {
      writeFileSync(path.join(dir, 'svc.yaml'), policyFor(`v${n}`));
      void holder.reload().then((r) => applied.push(r.version));
      await new Promise((r) => setImmediate(r));
    }
    const last = await holder.reload();
    const v6 = await versionOf('v6');
    expect(last.version).toBe(v6);
    expect(holder.current.version).toBe(v6);
    // Each applied version is newer than the one before it: the order of the files written.
    const order = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => versionOf(`v${n}`)));
    const indices = seen.map((s) => order.indexOf(s.split('->')[1]!));
    expect(indices).toEqual([...indices].sort((a, b) => a - b));
    expect(indices[indices.length - 1]).toBe(5);
  });

  test('a failed reload keeps the current set and records the rejection', async () => {
    const dir = policyDir({ 'svc.yaml': policyFor('v0') });
    const { events, seen } = recorder();
    const holder = await PolicyHolder.load(dir, silent);
    holder.listen(events);
    const before = holder.current;
    writeFileSync(path.join(dir, 'svc.yaml'), BROKEN);
    const result = await holder.reload();
    expect(result).toMatchObject({ ok: false, version: before.version });
    expect(result.problems.length).toBeGreaterThan(0);
    expect(holder.current).toBe(before);
    expect(holder.readinessCheck()).toBe(`loaded ${before.version}`);
    expect(seen).toEqual([`rejected ${result.problems.length} kept ${before.version}`]);
    expect(holder.history.records[0]).toMatchObject({
      result: 'rejected',
      version: before.version,
      errors: [expect.stringContaining('svc.yaml')],
    });
  });

  test('an unchanged directory reloads to nothing: no event, no history entry', async () => {
    const dir = policyDir({ 'svc.yaml': policyFor('v0') });
    const { events, seen } = recorder();
    const holder = await PolicyHolder.load(dir, silent);
    holder.listen(events);
    const before = holder.current;
    expect(await holder.reload()).toMatchObject({ ok: true, version: before.version });
    expect(holder.current).toBe(before);
    expect(seen).toEqual([]);
    expect(holder.history.records).toHaveLength(1);
  });

  test('a bundle switch serves the new directory; a bad one is refused and not retried by the next reload', async () => {
    const first = policyDir({ 'svc.yaml': policyFor('a') });
    const second = policyDir({ 'svc.yaml': policyFor('b') });
    const bad = policyDir({ 'svc.yaml': BROKEN });
    const { events, seen } = recorder();
    const holder = await PolicyHolder.load(first, silent);
    holder.listen(events);
    const [va, vb] = [holder.current.version, await versionOf('b')];

    expect(await holder.switchDirectory(second)).toMatchObject({
      ok: true,
      version: vb,
      directory: second,
    });
    expect(holder.directory).toBe(second);
    expect(holder.info()).toMatchObject({ version: vb, directory: second });

    expect(await holder.switchDirectory(bad)).toMatchObject({
      ok: false,
      version: vb,
      directory: bad,
    });
    expect(holder.directory).toBe(second);

    // The next plain reload reads the directory being served, not the refused bundle.
    writeFileSync(path.join(second, 'svc.yaml'), policyFor('c'));
    const vc = await versionOf('c');
    expect(await holder.reload()).toMatchObject({ ok: true, version: vc, directory: second });
    expect(seen).toEqual([
      `applied ${va}->${vb} dir`,
      `rejected 1 kept ${vb}`,
      `applied ${vb}->${vc}`,
    ]);
    expect(holder.info()['history']).toMatchObject([
      { result: 'reloaded', version: vc },
      { result: 'rejected', version: vb },
      { result: 'reloaded', version: vb },
      { result: 'loaded', version: va },
    ]);
  });

  test('a bundle with the same policies in a new directory is still switched to', async () => {
    const first = policyDir({ 'svc.yaml': policyFor('a') });
    const second = policyDir({ 'svc.yaml': policyFor('a') });
    const { events, seen } = recorder();
    const holder = await PolicyHolder.load(first, silent);
    holder.listen(events);
    const version = holder.current.version;
    expect(await holder.switchDirectory(second)).toMatchObject({ ok: true, version });
    expect(holder.directory).toBe(second);
    expect(seen).toEqual([`applied ${version}->${version} dir`]);
  });

  test('an edit that keeps the version but dirties the checkout is served with the -dirty label', async () => {
    const dir = policyDir({ 'svc.yaml': policyFor('a') });
    const git = (...args: string[]): string =>
      execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example', ...args], {
        cwd: dir,
        encoding: 'utf8',
      }).trim();
    git('init', '-q');
    git('add', '.');
    git('commit', '-qm', 'policies');
    const head = git('rev-parse', 'HEAD');
    const holder = await PolicyHolder.load(dir, silent);
    expect(holder.current.git).toEqual({ commit: head, dirty: false });
    const version = holder.current.version;

    appendFileSync(path.join(dir, 'svc.yaml'), '\n# a comment does not change the meaning\n');
    expect(await holder.reload()).toMatchObject({ ok: true, version });
    expect(holder.current.git).toEqual({ commit: head, dirty: true });
    expect(holder.current.gitLabel).toBe(`${head.slice(0, 12)}-dirty`);
    expect(holder.info()).toMatchObject({ git: { commit: head, dirty: true } });
  });
});
