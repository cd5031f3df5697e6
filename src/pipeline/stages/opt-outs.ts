import { findOptOut } from '../../policy/features/opt-out';
import { callerOf, requestOf, soft, type Stage } from '../context';
import { deny } from '../decision';

/** The caller's own WorkloadPolicy refusals, whatever the destination's policy allows. */
export const optOuts: Stage = {
  name: 'opt-outs',
  run(ctx) {
    const request = requestOf(ctx);
    if (request.kind === 'tcp') return undefined;
    const caller = callerOf(ctx).id.id;
    const own = ctx.set.optOuts.get(caller);
    const optOut = own === undefined ? undefined : findOptOut(own, request);
    if (!optOut) return undefined;
    ctx.optOut = `${optOut.policy.name}/${optOut.refusal.name}`;
    return soft(
      ctx,
      optOut.policy.mode === 'dry-run',
      deny(
        403,
        optOut.malformed ? 'malformed_request' : 'caller_opt_out',
        `caller ${caller} may not make this request: ${optOut.reason} (WorkloadPolicy ${optOut.policy.name})`,
      ),
    );
  },
};
