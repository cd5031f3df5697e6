import type { CompiledRateLimit, CompiledRule } from '../../policy/types';
import { bucketKey } from '../../ratelimit/limit';
import type { LimitResult } from '../../ratelimit/types';
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

/**
 * One await on the store and no async layer between it and the engine's loop: each one adds
 * promises and microtasks to every limited check. A store failure is answered with the rule's
 * onBackendError action.
 */
async function take(
  ctx: CheckContext,
  rule: CompiledRule,
  limit: CompiledRateLimit,
  key: string,
): Promise<StageOutcome> {
  let result: LimitResult;
  try {
    result = await ctx.services.store.take(key, limit, limit.cost);
  } catch (err) {
    ctx.limitBackendError = (err as Error).message;
    return limit.onBackendError === 'allow'
      ? ALLOWED
      : deny(429, 'limit_backend_error', `rate limit of rule ${rule.name} is unavailable`);
  }
  ctx.limit = result;
  if (!result.allowed) {
    return deny(
      429,
      'rate_limited',
      `rate limit of rule ${rule.name} exceeded; retry after ${result.retryAfterSeconds}s`,
    );
  }
  return undefined;
}
