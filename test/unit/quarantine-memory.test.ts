import { MemoryQuarantineState } from '../../src/quarantine/memory';
import { type QuarantineEvent, type QuarantineRule } from '../../src/quarantine/types';
import { CALLER, describeQuarantineContract, DRY, RULE } from '../contracts/quarantine.contract';

const T0 = Date.UTC(2030, 0, 1);

describeQuarantineContract('memory', async (options) => ({
  state: new MemoryQuarantineState(options),
}));

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

  it('stamps entries with its clock; current() stops at `until` before any sweep runs', async () => {
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
  });

  it('an enforce entry replacing a dry-run one starts at its own trip', async () => {
    const h = make();
    await h.deny(DRY.denials, DRY);
    h.advance(1000);
    const [enforced] = (await h.deny(RULE.denials)).slice(-1);
    expect(enforced).toMatchObject({ policy: 'payments', dryRun: false, since: h.now() });
  });

  it('denials spread over longer than the window never trip, however many', async () => {
    const h = make();
    // One denial every 2.5 s: at most 4 of them are ever inside a 10 s window.
    const results = await h.deny(50, RULE, CALLER, 2500);
    expect(results.every((r) => r === undefined)).toBe(true);
    expect(h.events).toEqual([]);
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
