import { MemoryQuarantineState } from '../../src/quarantine/memory';
import {
  IDENTITY_DENIALS,
  type QuarantineEvent,
  type QuarantineRule,
} from '../../src/quarantine/types';

const CALLER = 'spiffe://shop.example/ns/checkout/sa/web';
const OTHER = 'spiffe://shop.example/ns/checkout/sa/batch';
const T0 = Date.UTC(2030, 0, 1);

const RULE: QuarantineRule = {
  policy: 'payments',
  denials: 5,
  windowMs: 10_000,
  durationMs: 60_000,
  dryRun: false,
  countReasons: new Set(IDENTITY_DENIALS),
  scope: 'policy',
};
const DRY: QuarantineRule = { ...RULE, policy: 'payments-shadow', dryRun: true };

function harness(options: { maxTrackedKeys?: number } = {}) {
  let now = T0;
  const events: QuarantineEvent[] = [];
  const errors: Error[] = [];
  const state = new MemoryQuarantineState({
    onEvent: (e) => events.push(e),
    onError: (e) => errors.push(e),
    now: () => now,
    sweepMs: 60_000,
    ...options,
  });
  return {
    state,
    events,
    errors,
    advance: (ms: number) => (now += ms),
    now: () => now,
    deny: async (times: number, rule: QuarantineRule = RULE, caller = CALLER, stepMs = 0) => {
      const results = [];
      for (let i = 0; i < times; i++) {
        results.push(await state.recordDenial(caller, rule));
        now += stepMs;
      }
      return results;
    },
  };
}

describe('MemoryQuarantineState', () => {
  const open: MemoryQuarantineState[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  function make(options: { maxTrackedKeys?: number } = {}) {
    const h = harness(options);
    open.push(h.state);
    return h;
  }

  it('N-1 denials within the window quarantine nobody', async () => {
    const h = make();
    const results = await h.deny(RULE.denials - 1, RULE, CALLER, 1000);
    expect(results.every((r) => r === undefined)).toBe(true);
    expect(h.state.current(CALLER)).toBeUndefined();
    expect(h.events).toEqual([]);
    expect(await h.state.list()).toEqual([]);
  });

  it('the Nth denial within the window quarantines, once, with the entry', async () => {
    const h = make();
    await h.deny(RULE.denials - 1, RULE, CALLER, 1000);
    const entry = await h.state.recordDenial(CALLER, RULE);
    const now = h.now();
    expect(entry).toEqual({
      caller: CALLER,
      policy: 'payments',
      since: now,
      until: now + RULE.durationMs,
      denials: RULE.denials,
      dryRun: false,
    });
    expect(h.events).toEqual([{ type: 'enter', entry }]);
    expect(h.state.current(CALLER)).toEqual(entry);
    expect(h.state.current(OTHER)).toBeUndefined();
    expect(await h.state.list()).toEqual([entry]);
    expect(h.state.activeCounts()).toEqual({ enforce: 1, dryRun: 0 });
    expect(h.errors).toEqual([]);
  });

  it('denials spread over longer than the window never trip', async () => {
    const h = make();
    // One denial every 2.5 s: at most 4 of them are ever inside a 10 s window.
    const results = await h.deny(50, RULE, CALLER, 2500);
    expect(results.every((r) => r === undefined)).toBe(true);
    expect(h.events).toEqual([]);
    expect(h.state.current(CALLER)).toBeUndefined();
  });

  it('the window is per policy: denials under different policies do not add up', async () => {
    const h = make();
    await h.deny(RULE.denials - 1, RULE);
    await h.deny(RULE.denials - 1, { ...RULE, policy: 'orders' });
    expect(h.events).toEqual([]);
  });

  it('expiry: current() stops at `until`, one leave(expired) event', async () => {
    const h = make();
    const [entry] = (await h.deny(RULE.denials)).slice(-1);
    expect(entry).toBeDefined();
    expect(h.state.current(CALLER, entry!.until - 1)).toEqual(entry);
    // No sweep has run yet: the hot path alone must already stop denying.
    expect(h.state.current(CALLER, entry!.until)).toBeUndefined();
    h.advance(RULE.durationMs);
    expect(h.state.current(CALLER)).toBeUndefined();
    h.state.sweep();
    h.state.sweep();
    expect(h.events).toEqual([
      { type: 'enter', entry },
      { type: 'leave', entry, cause: 'expired' },
    ]);
    expect(await h.state.list()).toEqual([]);
    // The counter was cleared at entry: it takes a full N again.
    await h.deny(RULE.denials - 1);
    expect(h.state.current(CALLER)).toBeUndefined();
  });

  it('an expired entry touched by release() leaves as expired, not released', async () => {
    const h = make();
    await h.deny(RULE.denials);
    h.advance(RULE.durationMs + 1);
    expect(await h.state.release(CALLER)).toBeUndefined();
    expect(h.events.map((e) => (e.type === 'leave' ? `leave:${e.cause}` : e.type))).toEqual([
      'enter',
      'leave:expired',
    ]);
  });

  it('the sweep timer emits leave(expired) on its own', async () => {
    const events: QuarantineEvent[] = [];
    const state = new MemoryQuarantineState({ onEvent: (e) => events.push(e), sweepMs: 10 });
    open.push(state);
    for (let i = 0; i < 2; i++)
      await state.recordDenial(CALLER, { ...RULE, denials: 2, durationMs: 30 });
    expect(events.map((e) => e.type)).toEqual(['enter']);
    const deadline = Date.now() + 2000;
    while (events.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(events.map((e) => (e.type === 'leave' ? e.cause : e.type))).toEqual([
      'enter',
      'expired',
    ]);
  });

  it('release: removes the entry, one leave(released) event; releasing again is a no-op', async () => {
    const h = make();
    const [entry] = (await h.deny(RULE.denials)).slice(-1);
    expect(await h.state.release(CALLER)).toEqual(entry);
    expect(h.state.current(CALLER)).toBeUndefined();
    expect(await h.state.release(CALLER)).toBeUndefined();
    expect(await h.state.release(OTHER)).toBeUndefined();
    h.advance(RULE.durationMs + 1);
    h.state.sweep();
    expect(h.events).toEqual([
      { type: 'enter', entry },
      { type: 'leave', entry, cause: 'released' },
    ]);
  });

  it('a dry-run rule makes dry-run entries; an enforce rule tripping replaces them', async () => {
    const h = make();
    const [dry] = (await h.deny(DRY.denials, DRY)).slice(-1);
    expect(dry).toMatchObject({ policy: 'payments-shadow', dryRun: true });
    expect(h.state.current(CALLER)).toEqual(dry);
    expect(h.state.activeCounts()).toEqual({ enforce: 0, dryRun: 1 });

    // Further dry-run denials are covered by the dry-run entry.
    expect(await h.deny(DRY.denials, DRY)).toEqual(Array(DRY.denials).fill(undefined));

    h.advance(1000);
    const [enforced] = (await h.deny(RULE.denials)).slice(-1);
    expect(enforced).toMatchObject({ policy: 'payments', dryRun: false, since: h.now() });
    expect(h.state.current(CALLER)).toEqual(enforced);
    expect(h.events).toEqual([
      { type: 'enter', entry: dry },
      { type: 'enter', entry: enforced },
    ]);

    // An enforce entry covers dry-run rules too.
    await h.deny(DRY.denials, DRY);
    expect(h.state.current(CALLER)).toEqual(enforced);
    expect(h.events).toHaveLength(2);
  });

  it('denials while quarantined neither extend nor re-enter, nor count afterwards', async () => {
    const h = make();
    const [entry] = (await h.deny(RULE.denials)).slice(-1);
    h.advance(1000);
    const during = await h.deny(RULE.denials * 3, RULE, CALLER, 100);
    expect(during.every((r) => r === undefined)).toBe(true);
    expect(h.state.current(CALLER)).toEqual(entry);
    expect(h.events).toHaveLength(1);

    await h.state.release(CALLER);
    // What was denied during the quarantine did not accumulate towards the next one.
    expect((await h.deny(RULE.denials - 1)).every((r) => r === undefined)).toBe(true);
    expect(h.state.current(CALLER)).toBeUndefined();
  });

  it('keeps at most maxTrackedKeys windows, evicting the least recently touched', async () => {
    const h = make({ maxTrackedKeys: 100 });
    for (let i = 0; i < 1000; i++)
      await h.state.recordDenial(`spiffe://shop.example/caller-${i}`, RULE);
    expect(h.state.trackedKeys).toBe(100);
    // caller-900.. are the newest; caller-0 was evicted, so its count restarted.
    await h.deny(RULE.denials - 1, RULE, 'spiffe://shop.example/caller-999');
    expect(h.state.current('spiffe://shop.example/caller-999')).toBeDefined();
    await h.deny(RULE.denials - 1, RULE, 'spiffe://shop.example/caller-0');
    expect(h.state.current('spiffe://shop.example/caller-0')).toBeUndefined();
  });

  it('drops windows whose denials all fell out of the window', async () => {
    const h = make();
    for (let i = 0; i < 50; i++)
      await h.state.recordDenial(`spiffe://shop.example/caller-${i}`, RULE);
    expect(h.state.trackedKeys).toBe(50);
    h.advance(RULE.windowMs - 1);
    h.state.sweep();
    expect(h.state.trackedKeys).toBe(50);
    h.advance(1);
    h.state.sweep();
    expect(h.state.trackedKeys).toBe(0);
  });

  it('a window holds at most `denials` timestamps per key', async () => {
    const h = make();
    // Wide enough apart that they never trip, close enough that two stay in the window.
    await h.deny(200, { ...RULE, denials: 3, windowMs: 1000 }, CALLER, 500);
    const windows = (h.state as unknown as { windows: Map<string, { times: number[] }> }).windows;
    expect([...windows.values()].map((w) => w.times.length)).toEqual([2]);
    expect(h.events).toEqual([]);
  });

  it('never rejects: an invalid rule or a throwing onEvent goes to onError', async () => {
    const h = make();
    await expect(h.state.recordDenial(CALLER, { ...RULE, denials: 0 })).resolves.toBeUndefined();
    expect(h.errors).toHaveLength(1);

    const errors: Error[] = [];
    const state = new MemoryQuarantineState({
      onEvent: () => {
        throw new Error('audit sink down');
      },
      onError: (e) => errors.push(e),
    });
    open.push(state);
    const entry = await state.recordDenial(CALLER, { ...RULE, denials: 1 });
    expect(entry).toBeDefined();
    expect(state.current(CALLER)).toEqual(entry);
    expect(errors.map((e) => e.message)).toEqual(['audit sink down']);
  });

  it('seed() puts an entry in place without an event', async () => {
    const h = make();
    const entry = {
      caller: CALLER,
      policy: 'policy-test',
      since: T0,
      until: T0 + 1000,
      denials: 0,
      dryRun: false,
    };
    h.state.seed(entry);
    expect(h.state.current(CALLER)).toEqual(entry);
    expect(h.events).toEqual([]);
  });
});
