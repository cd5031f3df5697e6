import {
  IDENTITY_DENIALS,
  type QuarantineEntry,
  type QuarantineEvent,
  type QuarantineRule,
  type QuarantineState,
} from '../../src/quarantine/types';
import { waitFor } from '../helpers/wait';

/** What each implementation's factory is given: where its events and errors go, and a fast sweep. */
export interface QuarantineFactoryOptions {
  readonly onEvent: (event: QuarantineEvent) => void;
  readonly onError: (err: Error) => void;
  readonly sweepMs: number;
}

/**
 * A fresh, ready state on the real clock, sharing nothing with any other the factory made.
 * `close` releases whatever the factory opened beside the state (connections).
 */
export type QuarantineFactory = (
  options: QuarantineFactoryOptions,
) => Promise<{ state: QuarantineState; close?: () => Promise<void> }>;

export const CALLER = 'spiffe://shop.example/ns/checkout/sa/web';
const OTHER = 'spiffe://shop.example/ns/checkout/sa/batch';

export const RULE: QuarantineRule = {
  policy: 'payments',
  denials: 5,
  windowMs: 10_000,
  durationMs: 60_000,
  dryRun: false,
  countReasons: new Set(IDENTITY_DENIALS),
  scope: 'policy',
};
export const DRY: QuarantineRule = { ...RULE, policy: 'payments-shadow', dryRun: true };
const SWEEP_MS = 20;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The behaviour every QuarantineState gives a single replica, whatever holds the state. Runs on
 * the real clock (Redis stamps entries with its own TIME), so windows and durations are short.
 */
export function describeQuarantineContract(name: string, factory: QuarantineFactory): void {
  describe(`QuarantineState contract: ${name}`, () => {
    const closers: (() => Promise<void>)[] = [];
    afterEach(async () => {
      await Promise.all(closers.splice(0).map((close) => close()));
    });

    async function make() {
      const events: QuarantineEvent[] = [];
      const errors: Error[] = [];
      const made = await factory({
        onEvent: (e) => events.push(e),
        onError: (e) => errors.push(e),
        sweepMs: SWEEP_MS,
      });
      const { state } = made;
      closers.push(async () => {
        await state.close();
        await made.close?.();
      });
      const deny = async (times: number, rule: QuarantineRule = RULE, caller = CALLER) => {
        const results: (QuarantineEntry | undefined)[] = [];
        for (let i = 0; i < times; i++) results.push(await state.recordDenial(caller, rule));
        return results;
      };
      const last = async (times: number, rule: QuarantineRule = RULE, caller = CALLER) =>
        (await deny(times, rule, caller)).at(-1);
      return { state, events, errors, deny, last };
    }

    it('N-1 denials within the window quarantine nobody', async () => {
      const h = await make();
      const results = await h.deny(RULE.denials - 1);
      expect(results.every((r) => r === undefined)).toBe(true);
      expect(h.state.current(CALLER)).toBeUndefined();
      expect(h.events).toEqual([]);
      expect(await h.state.list()).toEqual([]);
    });

    it('the Nth denial within the window quarantines, once, with the entry', async () => {
      const h = await make();
      await h.deny(RULE.denials - 1);
      const entry = await h.state.recordDenial(CALLER, RULE);
      expect(entry).toMatchObject({
        caller: CALLER,
        policy: 'payments',
        denials: RULE.denials,
        dryRun: false,
      });
      expect(entry!.until - entry!.since).toBe(RULE.durationMs);
      expect(h.events).toEqual([{ type: 'enter', entry }]);
      expect(h.state.current(CALLER)).toEqual(entry);
      expect(h.state.current(OTHER)).toBeUndefined();
      expect(await h.state.list()).toEqual([entry]);
      expect(h.state.activeCounts()).toEqual({ enforce: 1, dryRun: 0 });
      expect(h.errors).toEqual([]);
    });

    it('the window slides: denials spread wider than the window never trip', async () => {
      const h = await make();
      const rule = { ...RULE, denials: 3, windowMs: 150 };
      // Time-based on purpose: one denial every 100 ms keeps at most two inside any 150 ms window.
      for (let i = 0; i < 8; i++) {
        expect(await h.state.recordDenial(CALLER, rule)).toBeUndefined();
        await sleep(100);
      }
      expect(h.events).toEqual([]);
      expect(h.state.current(CALLER)).toBeUndefined();
    });

    it('the window is per policy: denials under different policies do not add up', async () => {
      const h = await make();
      await h.deny(RULE.denials - 1, RULE);
      await h.deny(RULE.denials - 1, { ...RULE, policy: 'orders' });
      expect(h.events).toEqual([]);
    });

    it('expiry: the sweep emits one leave(expired) on its own; the next quarantine takes a full N again', async () => {
      const h = await make();
      const rule = { ...RULE, denials: 2, durationMs: 300 };
      const entry = await h.last(rule.denials, rule);
      expect(entry).toBeDefined();
      expect(h.state.current(CALLER)).toEqual(entry);
      await waitFor(() => h.events.length === 2, 'the sweep to emit leave(expired)', 5000);
      expect(h.state.current(CALLER)).toBeUndefined();
      expect(await h.state.list()).toEqual([]);
      // Long enough for several more sweeps: none may emit the leave again.
      await sleep(10 * SWEEP_MS);
      expect(h.events).toEqual([
        { type: 'enter', entry },
        { type: 'leave', entry, cause: 'expired' },
      ]);
      // The counter was cleared at entry.
      await h.deny(rule.denials - 1, rule);
      expect(h.state.current(CALLER)).toBeUndefined();
      expect(h.errors).toEqual([]);
    });

    it('release: removes the entry, one leave(released) event; releasing again is a no-op', async () => {
      const h = await make();
      const rule = { ...RULE, durationMs: 300 };
      const entry = await h.last(rule.denials, rule);
      expect(await h.state.release(CALLER)).toEqual(entry);
      expect(h.state.current(CALLER)).toBeUndefined();
      expect(await h.state.release(CALLER)).toBeUndefined();
      expect(await h.state.release(OTHER)).toBeUndefined();
      expect(await h.state.list()).toEqual([]);
      // Past the released entry's end and several sweeps: it must not leave a second time.
      await sleep(rule.durationMs + 10 * SWEEP_MS);
      expect(h.events).toEqual([
        { type: 'enter', entry },
        { type: 'leave', entry, cause: 'released' },
      ]);
    });

    it('a dry-run rule makes dry-run entries; an enforce rule tripping replaces them', async () => {
      const h = await make();
      const dry = await h.last(DRY.denials, DRY);
      expect(dry).toMatchObject({ policy: 'payments-shadow', dryRun: true });
      expect(h.state.current(CALLER)).toEqual(dry);
      expect(h.state.activeCounts()).toEqual({ enforce: 0, dryRun: 1 });

      // Further dry-run denials are covered by the dry-run entry.
      expect(await h.deny(DRY.denials, DRY)).toEqual(Array(DRY.denials).fill(undefined));

      const enforced = await h.last(RULE.denials);
      expect(enforced).toMatchObject({ policy: 'payments', dryRun: false });
      expect(h.state.current(CALLER)).toEqual(enforced);
      expect(h.state.activeCounts()).toEqual({ enforce: 1, dryRun: 0 });
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
      const h = await make();
      const entry = await h.last(RULE.denials);
      const during = await h.deny(RULE.denials * 3);
      expect(during.every((r) => r === undefined)).toBe(true);
      expect(h.state.current(CALLER)).toEqual(entry);
      expect(await h.state.list()).toEqual([entry]);
      expect(h.events).toHaveLength(1);

      await h.state.release(CALLER);
      // What was denied during the quarantine did not accumulate towards the next one.
      expect((await h.deny(RULE.denials - 1)).every((r) => r === undefined)).toBe(true);
      expect(h.state.current(CALLER)).toBeUndefined();
    });
  });
}
