import { MemoryGrantTracker } from '../../src/grants/memory';
import {
  API,
  DAY,
  describeGrantTrackerContract,
  grant,
  T0,
  WEB,
} from '../contracts/grants.contract';

describeGrantTrackerContract('memory', async () => ({ tracker: new MemoryGrantTracker() }));

describe('MemoryGrantTracker', () => {
  test('back to an old policy content: a version it no longer tracked is new again', () => {
    const t = new MemoryGrantTracker();
    const v1 = grant();
    t.setGrants([v1], T0);
    t.setGrants([grant({ version: 'v2' })], T0 + 40 * DAY);
    t.setGrants([v1], T0 + 80 * DAY);
    expect(t.isDormant(v1, WEB, T0 + 80 * DAY)).toBe(false);
    expect(t.isDormant(v1, WEB, T0 + 110 * DAY)).toBe(true);
  });

  test('tracked pairs are bounded: the least recently used pair goes, with a warning', () => {
    const warnings: string[] = [];
    const t = new MemoryGrantTracker({ maxPairs: 3, onWarn: (m) => warnings.push(m) });
    const g = grant({ pattern: 'spiffe://shop.example/**' });
    t.setGrants([g], T0);
    const caller = (i: number): string => `spiffe://shop.example/pod/${i}`;
    t.used(g, caller(1), T0 + DAY);
    t.used(g, caller(2), T0 + DAY);
    t.used(g, caller(3), T0 + DAY);
    t.used(g, caller(1), T0 + 2 * DAY); // 1 is now the most recent; 2 the least
    expect(warnings).toEqual([]);
    t.used(g, caller(4), T0 + 2 * DAY);
    expect(t.pairs).toBe(3);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('bound of 3');

    const now = T0 + 31 * DAY + 1;
    // 2's use is forgotten, so its clock falls back to the grant's since.
    expect(t.isDormant(g, caller(2), now)).toBe(true);
    expect(t.isDormant(g, caller(1), now)).toBe(false);
    expect(t.isDormant(g, caller(3), T0 + 30 * DAY)).toBe(false);
    expect(t.isDormant(g, caller(4), now)).toBe(false);

    // Warnings are rate-limited (once an hour of tracker time).
    t.used(g, caller(5), T0 + 2 * DAY);
    expect(warnings).toHaveLength(1);
    t.used(g, caller(6), T0 + 3 * DAY);
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toContain('(3 so far');
  });

  test('setGrants dropping a version frees its pairs from the bound', () => {
    const t = new MemoryGrantTracker({ maxPairs: 2 });
    const v1 = grant();
    t.setGrants([v1], T0);
    t.used(v1, WEB, T0);
    t.used(v1, API, T0);
    const v2 = grant({ version: 'v2' });
    t.setGrants([v2], T0 + DAY);
    expect(t.pairs).toBe(0);
    t.used(v2, WEB, T0 + DAY);
    t.used(v2, API, T0 + DAY);
    expect(t.pairs).toBe(2);
    expect(t.isDormant(v2, WEB, T0 + 31 * DAY - 1)).toBe(false);
  });

  test('is the memory kind, and close resolves', async () => {
    const t = new MemoryGrantTracker();
    expect(t.kind).toBe('memory');
    await expect(t.close()).resolves.toBeUndefined();
  });
});
