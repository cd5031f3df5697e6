import { authorize, authorizeTcp } from '../../policy/authorize';
import type { SpiffeId } from '../../identity/spiffe';
import type { CompiledPolicy } from '../../policy/types';
import { callerOf, clip, requestOf, type CheckContext, type Stage } from '../context';
import { ALLOWED, deny, type Verdict } from '../decision';

/**
 * The destination's rules: refusals beat allows, then the first allow that names the caller.
 * A connection (TCP) is decided here by the policy's tcp rules alone.
 */
export const authorization: Stage = {
  name: 'authorize',
  run(ctx) {
    const request = requestOf(ctx);
    const caller = callerOf(ctx).id;
    const policy = ctx.policy;
    if (request.kind === 'tcp') {
      ctx.policyDecides = policy !== undefined;
      return authorizeConnection(policy, request.host, caller, ctx);
    }
    const refusal = ctx.selectionRefusal;
    if (refusal !== undefined) return deny(403, refusal.code, refusal.reason);
    if (policy === undefined)
      return deny(403, 'unknown_host', `no policy guards host '${clip(request.host)}'`);

    ctx.policyDecides = true;
    const authz = authorize(policy, request, caller, ctx.trace);
    switch (authz.kind) {
      case 'ambiguous':
        ctx.rule = authz.rule;
        return deny(
          403,
          'malformed_request',
          `malformed request: ${authz.reason} (read by the condition of rule ${authz.rule.name} of policy ${policy.name})`,
        );
      case 'condition-error':
        ctx.rule = authz.rule;
        return deny(
          403,
          'condition_error',
          `condition of rule ${authz.rule.name} of policy ${policy.name} could not be evaluated: ${authz.error}`,
        );
      case 'no-route':
        return deny(
          403,
          'no_matching_rule',
          `no rule of policy ${policy.name} matches ${request.method} ${clip(request.path)}`,
        );
      case 'not-allowed':
        return deny(
          403,
          'caller_not_allowed',
          `caller ${caller.id} is not allowed by policy ${policy.name}`,
        );
      case 'refused':
        ctx.rule = authz.rule;
        ctx.entry = { list: 'deny', index: authz.entry };
        return deny(
          403,
          'caller_refused',
          `caller ${caller.id} is refused by rule ${authz.rule.name} of policy ${policy.name}`,
        );
      case 'allowed':
        ctx.rule = authz.rule;
        ctx.entry = { list: 'allow', index: authz.entry };
        return undefined;
    }
  },
};

function authorizeConnection(
  policy: CompiledPolicy | undefined,
  workload: string,
  caller: SpiffeId,
  ctx: CheckContext,
): Verdict {
  if (policy === undefined)
    return deny(403, 'unknown_host', `no policy guards workload '${clip(workload)}' (TCP)`);
  const tcp = authorizeTcp(policy, caller);
  switch (tcp.kind) {
    case 'no-tcp-rules':
      return deny(
        403,
        'no_matching_rule',
        `policy ${policy.name} has no tcp rules for connections`,
      );
    case 'not-allowed':
      return deny(
        403,
        'caller_not_allowed',
        `caller ${caller.id} may not connect to ${workload} (policy ${policy.name})`,
      );
    case 'refused':
      ctx.entry = { list: 'deny', index: tcp.entry };
      return deny(
        403,
        'caller_refused',
        `caller ${caller.id} is refused by tcp.deny of policy ${policy.name}`,
      );
    case 'allowed':
      // Nothing after this stage reads a connection: it is decided.
      ctx.entry = { list: 'allow', index: tcp.entry };
      return ALLOWED;
  }
}
