import { resolveIdentity, type IdentityOutcome } from '../../identity/resolve';
import { requestOf, type CheckContext, type Stage, type StageOutcome } from '../context';
import { deny } from '../decision';

/** Who is calling. Only a JWT-SVID's signature check makes this stage wait. */
export const identification: Stage = {
  name: 'identity',
  run(ctx) {
    const outcome = resolveIdentity(requestOf(ctx), ctx.services.identity, ctx.policy);
    return outcome instanceof Promise
      ? outcome.then((identity) => identified(ctx, identity))
      : identified(ctx, outcome);
  },
};

function identified(ctx: CheckContext, identity: IdentityOutcome): StageOutcome {
  ctx.identity = identity;
  return identity.ok ? undefined : deny(401, identity.code, identity.reason);
}
