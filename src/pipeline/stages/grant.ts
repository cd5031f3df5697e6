import { formatDuration } from '../../policy/duration';
import { admittedBy, admittingEntry, callerOf, policyOf, type Stage } from '../context';
import { deny } from '../decision';

/** An allow entry granted with `maxIdle` lapses once its caller stops using it. */
export const grantInUse: Stage = {
  name: 'grant',
  run(ctx) {
    const rule = admittedBy(ctx);
    const entry = admittingEntry(ctx);
    const grant = rule.grants[entry];
    if (!grant) return undefined;
    const caller = callerOf(ctx).id.id;
    if (ctx.services.grants.isDormant(grant, caller, ctx.services.now())) {
      return deny(
        403,
        'grant_dormant',
        `grant dormant: allow entry ${entry} of rule ${rule.name} of policy ${policyOf(ctx).name} has not been used by ${caller} for ${formatDuration(grant.maxIdleMs)}; change the policy or renew it (gatehouse access renew)`,
      );
    }
    // Marked used by the engine only once the whole check is allowed.
    ctx.grant = grant;
    return undefined;
  },
};
