import {
  policyForDestination,
  selectHttpPolicy,
  SelectionRefusal,
} from '../../policy/features/select';
import { requestOf, type Stage } from '../context';

/**
 * The policy that guards the destination. It runs before identity because a JWT-SVID is
 * verified against the destination's audiences; a Host or route that does not fit the policy
 * is held and reported once the caller is known (authorise).
 */
export const policySelection: Stage = {
  name: 'select-policy',
  run(ctx) {
    const request = requestOf(ctx);
    if (request.kind === 'tcp') {
      ctx.policy = policyForDestination(ctx.set.destinations, request.host);
      return undefined;
    }
    const selected = selectHttpPolicy(ctx.set, request);
    if (selected instanceof SelectionRefusal) {
      ctx.selectionRefusal = selected;
      ctx.policy = selected.policy;
    } else {
      ctx.policy = selected;
    }
    return undefined;
  },
};
