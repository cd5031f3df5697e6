import { MemoryGrantTracker } from '../../src/grants/memory';
import type { GrantRef } from '../../src/grants/types';

const DAY = 24 * 60 * 60 * 1000;
const T0 = Date.UTC(2025, 0, 1);
const WEB = 'spiffe://shop.example/ns/checkout/sa/web';
const API = 'spiffe://shop.example/ns/checkout/sa/api';
const OTHER = 'spiffe://shop.example/ns/billing/sa/job';

function grant(overrides: Partial<GrantRef> = {}): GrantRef {
  return {
    policy: 'orders',
    version: 'v1',
    rule: 'read',
    entry: 0,
    pattern: 'spiffe://shop.example/ns/checkout/**',
    maxIdleMs: 30 * DAY,
    ...overrides,
  };
}

describe('MemoryGrantTracker', () => {
  test('a grant nobody used is dormant exactly maxIdle after it was first seen', () => {
    const t = new MemoryGrantTracker();
    const g = grant();
    t.setGrants([g], T0);
    expect(t.isDormant(g, WEB, T0 + 30 * DAY - 1)).toBe(false);
    expect(t.isDormant(g, WEB, T0 + 30 * DAY)).toBe(true);
    // Seeing the same grants again later does not restart the clock.
    t.setGrants([g], T0 + 10 * DAY);
    expect(t.isDormant(g, WEB, T0 + 30 * DAY)).toBe(true);
  });

  test('a use keeps the grant fresh for that caller only', () => {
    const t = new MemoryGrantTracker();
    const g = grant();
    t.setGrants([g], T0);
    t.used(g, WEB, T0 + 20 * DAY);
    expect(t.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
    expect(t.isDormant(g, WEB, T0 + 50 * DAY)).toBe(true);
    expect(t.isDormant(g, API, T0 + 31 * DAY)).toBe(true);
    // An earlier use reported late never moves the last use back.
    t.used(g, WEB, T0 + 5 * DAY);
    expect(t.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
  });

  test('lookup by value works for GrantRef objects other than the ones setGrants got', () => {
    const t = new MemoryGrantTracker();
    t.setGrants([grant()], T0);
    t.used(grant(), WEB, T0 + 20 * DAY);
    expect(t.isDormant(grant(), WEB, T0 + 40 * DAY)).toBe(false);
    expect(t.isDormant(grant(), API, T0 + 40 * DAY)).toBe(true);
  });

  test('a changed policy (new version) starts a fresh clock; the old version is forgotten', async () => {
    const t = new MemoryGrantTracker();
    const v1 = grant();
    t.setGrants([v1], T0);
    t.used(v1, WEB, T0 + DAY);
    expect(t.isDormant(v1, API, T0 + 40 * DAY)).toBe(true);

    const v2 = grant({ version: 'v2' });
    t.setGrants([v2], T0 + 40 * DAY);
    expect(t.isDormant(v2, API, T0 + 40 * DAY)).toBe(false);
    expect(t.isDormant(v2, API, T0 + 70 * DAY - 1)).toBe(false);
    expect(t.isDormant(v2, API, T0 + 70 * DAY)).toBe(true);
    // The old version is unknown now: never dormant, uses of it are ignored, not reported.
    expect(t.isDormant(v1, API, T0 + 40 * DAY)).toBe(false);
    t.used(v1, WEB, T0 + 41 * DAY);
    expect(t.pairs).toBe(0);
    const rows = await t.report(T0 + 41 * DAY);
    expect(rows.map((r) => [r.version, r.caller])).toEqual([['v2', '']]);

    // Back to the old content: a version it no longer tracked is new again.
    t.setGrants([v1], T0 + 80 * DAY);
    expect(t.isDormant(v1, WEB, T0 + 80 * DAY)).toBe(false);
    expect(t.isDormant(v1, WEB, T0 + 110 * DAY)).toBe(true);
  });

  test('renewal for one caller restarts that caller, and lifts a caller that never used the grant', async () => {
    const t = new MemoryGrantTracker();
    const g = grant();
    t.setGrants([g], T0);
    t.used(g, WEB, T0 + DAY);
    const now = T0 + 40 * DAY;
    expect(t.isDormant(g, WEB, now)).toBe(true);
    expect(t.isDormant(g, API, now)).toBe(true);

    expect(await t.renew({ policy: 'orders', caller: WEB }, now)).toBe(1);
    expect(t.isDormant(g, WEB, now)).toBe(false);
    expect(t.isDormant(g, WEB, now + 30 * DAY)).toBe(true);
    expect(t.isDormant(g, API, now)).toBe(true);

    // API never used it; its pattern admits API, so the renewal applies.
    expect(await t.renew({ caller: API }, now)).toBe(1);
    expect(t.isDormant(g, API, now + 30 * DAY - 1)).toBe(false);
    // A caller the pattern does not admit gets nothing to renew.
    expect(await t.renew({ caller: OTHER }, now)).toBe(0);
    // Filters that match no grant renew nothing.
    expect(await t.renew({ policy: 'nope' }, now)).toBe(0);
    expect(await t.renew({ policy: 'orders', rule: 'write' }, now)).toBe(0);
  });

  test('grant-wide renewal restarts every caller, known or not, and counts grants nobody used', async () => {
    const t = new MemoryGrantTracker();
    const read = grant();
    const write = grant({ rule: 'write' });
    const second = grant({ entry: 1, pattern: 'spiffe://shop.example/ns/billing/**' });
    t.setGrants([read, write, second], T0);
    t.used(read, WEB, T0 + DAY);
    t.used(read, API, T0 + 2 * DAY);
    const now = T0 + 45 * DAY;

    // read: two usages; second (entry 1): no usage, counts once.
    expect(await t.renew({ policy: 'orders', rule: 'read' }, now)).toBe(3);
    for (const caller of [WEB, API, OTHER]) {
      expect(t.isDormant(read, caller, now + 30 * DAY - 1)).toBe(false);
      expect(t.isDormant(read, caller, now + 30 * DAY)).toBe(true);
    }
    expect(t.isDormant(second, OTHER, now)).toBe(false);
    expect(t.isDormant(write, WEB, now)).toBe(true);

    const rows = await t.report(now);
    const readWeb = rows.find((r) => r.rule === 'read' && r.entry === 0 && r.caller === WEB)!;
    expect(readWeb).toMatchObject({ lastUsed: T0 + DAY, since: now, dormant: false });
  });

  test('report lists never-used grants first, then usages by oldest last use', async () => {
    const t = new MemoryGrantTracker();
    const a = grant({ policy: 'alpha', maxIdleMs: 10 * DAY });
    const b = grant({ policy: 'beta' });
    const c = grant({ policy: 'gamma' });
    t.setGrants([a, b, c], T0);
    t.used(b, WEB, T0 + 5 * DAY);
    t.used(b, API, T0 + 2 * DAY);
    t.used(c, WEB, T0 + 3 * DAY);

    const rows = await t.report(T0 + 12 * DAY);
    expect(rows.map((r) => [r.policy, r.caller, r.lastUsed])).toEqual([
      ['alpha', '', undefined],
      ['beta', API, T0 + 2 * DAY],
      ['gamma', WEB, T0 + 3 * DAY],
      ['beta', WEB, T0 + 5 * DAY],
    ]);
    expect(rows[0]).toEqual({
      policy: 'alpha',
      version: 'v1',
      rule: 'read',
      entry: 0,
      pattern: 'spiffe://shop.example/ns/checkout/**',
      caller: '',
      lastUsed: undefined,
      since: T0,
      maxIdleMs: 10 * DAY,
      dormant: true,
    });
    expect(rows.slice(1).every((r) => !r.dormant)).toBe(true);
  });

  test('a caller renewed but never using the grant has its own row, and the grant still shows as unused', async () => {
    const t = new MemoryGrantTracker();
    const g = grant();
    t.setGrants([g], T0);
    await t.renew({ caller: WEB }, T0 + 10 * DAY);
    const rows = await t.report(T0 + 35 * DAY);
    expect(rows.map((r) => [r.caller, r.since, r.dormant])).toEqual([
      ['', T0, true],
      [WEB, T0 + 10 * DAY, false],
    ]);
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

  test('an unknown grant is never dormant and its uses are not recorded', async () => {
    const t = new MemoryGrantTracker();
    const g = grant();
    expect(t.isDormant(g, WEB, T0 + 1000 * DAY)).toBe(false);
    t.used(g, WEB, T0);
    expect(await t.report(T0)).toEqual([]);
    await expect(t.sync()).resolves.toBeUndefined();
    await expect(t.ready()).resolves.toBeUndefined();
    await expect(t.close()).resolves.toBeUndefined();
    expect(t.kind).toBe('memory');
  });

  test('dormantCount counts the report rows that are dormant, for the metrics gauge', () => {
    const t = new MemoryGrantTracker();
    const g = grant();
    t.setGrants([g], T0);
    expect(t.dormantCount(T0)).toBe(0);
    t.used(g, WEB, T0 + 20 * DAY);
    // Day 31: the grant-wide clock lapsed for API (never used it), WEB is fresh.
    expect(t.dormantCount(T0 + 31 * DAY)).toBe(0);
    t.used(g, API, T0 + 1 * DAY);
    expect(t.dormantCount(T0 + 32 * DAY)).toBe(1); // API, last use day 1
    expect(t.dormantCount(T0 + 50 * DAY)).toBe(2); // and WEB
  });
});
