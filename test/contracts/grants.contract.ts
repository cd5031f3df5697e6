import type { GrantRef, GrantTracker } from '../../src/grants/types';

/** A fresh tracker sharing nothing with any other the factory made; `close` releases what it opened. */
export type GrantTrackerFactory = () => Promise<{
  tracker: GrantTracker & { readonly pairs: number };
  close?: () => Promise<void>;
}>;

export const DAY = 24 * 60 * 60 * 1000;
export const T0 = Date.UTC(2025, 0, 1);
export const WEB = 'spiffe://shop.example/ns/checkout/sa/web';
export const API = 'spiffe://shop.example/ns/checkout/sa/api';
const OTHER = 'spiffe://shop.example/ns/billing/sa/job';

export function grant(overrides: Partial<GrantRef> = {}): GrantRef {
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

/**
 * The behaviour every GrantTracker gives one replica, whatever holds the usage. Times are the
 * `now` callers pass, so days go by without waiting. Each setGrants is followed by sync(): a
 * shared tracker knows a version's clock only once it has pulled it (a no-op in memory).
 */
export function describeGrantTrackerContract(name: string, factory: GrantTrackerFactory): void {
  describe(`GrantTracker contract: ${name}`, () => {
    const closers: (() => Promise<void>)[] = [];
    afterEach(async () => {
      await Promise.all(closers.splice(0).map((close) => close()));
    });

    async function make() {
      const made = await factory();
      closers.push(async () => {
        await made.tracker.close();
        await made.close?.();
      });
      const t = made.tracker;
      const setGrants = async (grants: GrantRef[], now: number) => {
        t.setGrants(grants, now);
        await t.sync();
      };
      return { t, setGrants };
    }

    test('a grant nobody used is dormant exactly maxIdle after it was first seen', async () => {
      const { t, setGrants } = await make();
      const g = grant();
      await setGrants([g], T0);
      expect(t.isDormant(g, WEB, T0 + 30 * DAY - 1)).toBe(false);
      expect(t.isDormant(g, WEB, T0 + 30 * DAY)).toBe(true);
      // Seeing the same grants again later does not restart the clock.
      await setGrants([g], T0 + 10 * DAY);
      expect(t.isDormant(g, WEB, T0 + 30 * DAY)).toBe(true);
    });

    test('a use keeps the grant fresh for that caller only', async () => {
      const { t, setGrants } = await make();
      const g = grant();
      await setGrants([g], T0);
      t.used(g, WEB, T0 + 20 * DAY);
      expect(t.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
      expect(t.isDormant(g, WEB, T0 + 50 * DAY)).toBe(true);
      expect(t.isDormant(g, API, T0 + 31 * DAY)).toBe(true);
      // An earlier use reported late never moves the last use back.
      t.used(g, WEB, T0 + 5 * DAY);
      expect(t.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
      await t.sync();
      expect(t.isDormant(g, WEB, T0 + 49 * DAY)).toBe(false);
    });

    test('lookup by value works for GrantRef objects other than the ones setGrants got', async () => {
      const { t, setGrants } = await make();
      await setGrants([grant()], T0);
      t.used(grant(), WEB, T0 + 20 * DAY);
      expect(t.isDormant(grant(), WEB, T0 + 40 * DAY)).toBe(false);
      expect(t.isDormant(grant(), API, T0 + 40 * DAY)).toBe(true);
    });

    test('a changed policy (new version) starts a fresh clock; the old version is forgotten', async () => {
      const { t, setGrants } = await make();
      const v1 = grant();
      await setGrants([v1], T0);
      t.used(v1, WEB, T0 + DAY);
      expect(t.isDormant(v1, API, T0 + 40 * DAY)).toBe(true);

      const v2 = grant({ version: 'v2' });
      await setGrants([v2], T0 + 40 * DAY);
      expect(t.isDormant(v2, API, T0 + 40 * DAY)).toBe(false);
      expect(t.isDormant(v2, API, T0 + 70 * DAY - 1)).toBe(false);
      expect(t.isDormant(v2, API, T0 + 70 * DAY)).toBe(true);
      // The old version is unknown now: never dormant, uses of it are ignored, not reported.
      expect(t.isDormant(v1, API, T0 + 40 * DAY)).toBe(false);
      t.used(v1, WEB, T0 + 41 * DAY);
      expect(t.pairs).toBe(0);
      const rows = await t.report(T0 + 41 * DAY);
      expect(rows.map((r) => [r.version, r.caller])).toEqual([['v2', '']]);
    });

    test('renewal for one caller restarts that caller, and lifts a caller that never used the grant', async () => {
      const { t, setGrants } = await make();
      const g = grant();
      await setGrants([g], T0);
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
      const { t, setGrants } = await make();
      const read = grant();
      const write = grant({ rule: 'write' });
      const second = grant({ entry: 1, pattern: 'spiffe://shop.example/ns/billing/**' });
      await setGrants([read, write, second], T0);
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
      const { t, setGrants } = await make();
      const a = grant({ policy: 'alpha', maxIdleMs: 10 * DAY });
      const b = grant({ policy: 'beta' });
      const c = grant({ policy: 'gamma' });
      await setGrants([a, b, c], T0);
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
      const { t, setGrants } = await make();
      const g = grant();
      await setGrants([g], T0);
      await t.renew({ caller: WEB }, T0 + 10 * DAY);
      const rows = await t.report(T0 + 35 * DAY);
      expect(rows.map((r) => [r.caller, r.since, r.dormant])).toEqual([
        ['', T0, true],
        [WEB, T0 + 10 * DAY, false],
      ]);
    });

    test('an unknown grant is never dormant and its uses are not recorded', async () => {
      const { t } = await make();
      const g = grant();
      expect(t.isDormant(g, WEB, T0 + 1000 * DAY)).toBe(false);
      t.used(g, WEB, T0);
      await expect(t.sync()).resolves.toBeUndefined();
      await expect(t.ready()).resolves.toBeUndefined();
      expect(await t.report(T0)).toEqual([]);
      expect(t.pairs).toBe(0);
    });

    test('dormantCount counts the report rows that are dormant, for the metrics gauge', async () => {
      const { t, setGrants } = await make();
      const g = grant();
      await setGrants([g], T0);
      expect(t.dormantCount(T0)).toBe(0);
      t.used(g, WEB, T0 + 20 * DAY);
      // Day 31: the grant-wide clock lapsed for API (never used it), WEB is fresh.
      expect(t.dormantCount(T0 + 31 * DAY)).toBe(0);
      t.used(g, API, T0 + 1 * DAY);
      expect(t.dormantCount(T0 + 32 * DAY)).toBe(1); // API, last use day 1
      expect(t.dormantCount(T0 + 50 * DAY)).toBe(2); // and WEB
    });
  });
}
