import {
  quarantineSubject,
  type QuarantineEntry,
  type QuarantineState,
} from '../../quarantine/types';
import { callerOf, soft, type CheckContext, type Stage } from '../context';
import { deny } from '../decision';

/** A caller isolated after repeated denials is refused before its request is read further. */
export const quarantine: Stage = {
  name: 'quarantine',
  run(ctx) {
    const caller = callerOf(ctx).id.id;
    const entry = isolation(ctx.services.quarantine, caller, ctx);
    if (entry === undefined) return undefined;
    const until = new Date(entry.until).toISOString();
    return soft(
      ctx,
      entry.dryRun,
      deny(
        403,
        'quarantined',
        `quarantined: caller ${caller} is isolated until ${until} after ${entry.denials} denials by policy ${entry.policy}`,
      ),
    );
  },
};

/** The quarantine entry that isolates the caller from this request's destination, if any. */
function isolation(
  state: QuarantineState,
  caller: string,
  ctx: CheckContext,
): QuarantineEntry | undefined {
  const now = ctx.services.now();
  const meshWide = state.current(caller, now);
  if (meshWide !== undefined && isolatedHere(meshWide, ctx)) return meshWide;
  const rule = ctx.policy?.quarantine;
  return rule?.scope === 'policy' ? state.current(quarantineSubject(caller, rule), now) : undefined;
}

/**
 * Whether an entry held under the caller itself covers this request: every destination when
 * its policy says `scope: mesh` (or is no longer loaded: a reload must not lift an isolation),
 * else only that policy's workloads (its scope changed since the entry was made).
 */
function isolatedHere(entry: QuarantineEntry, ctx: CheckContext): boolean {
  const owner = ctx.set.byName.get(entry.policy);
  return owner === undefined || owner === ctx.policy || owner.quarantine?.scope !== 'policy';
}
