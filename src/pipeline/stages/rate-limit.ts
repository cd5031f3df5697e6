import type { CompiledRateLimit, CompiledRule } from '../../policy/types';
import { applyLimit, bucketKey } from '../../ratelimit/limit';
import { keyedHeaderAmbiguity } from '../../request/ambiguity';
import {
  admittedBy,
  callerOf,
  policyOf,
  requestOf,
  type CheckContext,
  type Stage,
  type StageOutcome,
} from '../context';
import { ALLOWED, deny } from '../decision';

/** The admitting rule's token bucket; the one stage that waits on a backend, and only when the rule has a limit. */
export const rateLimit: Stage = {
  name: 'rate-limit',
  run(ctx) {
    const rule = admittedBy(ctx);
    const limit = rule.rateLimit;
    if (limit === null) return undefined;
    const request = requestOf(ctx);
    const keyAmbiguity =
      limit.per.kind === 'header' ? keyedHeaderAmbiguity(limit.per.name, request) : undefined;
    if (keyAmbiguity !== undefined)
      return deny(
        403,
        'malformed_request',
        `malformed request: ${keyAmbiguity} (rule ${rule.name} of policy ${policyOf(ctx).name})`,
      );
    return take(ctx, rule, limit, bucketKey(limit, request, callerOf(ctx).id.id));
  },
};

async function take(
  ctx: CheckContext,
  rule: CompiledRule,
  limit: CompiledRateLimit,
  key: string,
): Promise<StageOutcome> {
  const outcome = await applyLimit(ctx.services.store, limit, key);
  if (outcome.kind === 'backend-error') {
    ctx.limitBackendError = outcome.error;
    return outcome.action === 'allow'
      ? ALLOWED
      : deny(429, 'limit_backend_error', `rate limit of rule ${rule.name} is unavailable`);
  }
  ctx.limit = outcome.result;
  if (!outcome.result.allowed) {
    return deny(
      429,
      'rate_limited',
      `rate limit of rule ${rule.name} exceeded; retry after ${outcome.result.retryAfterSeconds}s`,
    );
  }
  return undefined;
}
