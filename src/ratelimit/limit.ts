import { createHash } from 'node:crypto';
import type { CompiledRateLimit } from '../policy/types';
import type { NormalizedRequest } from '../request/normalize';
import type { BucketStore, LimitResult } from './types';

export type LimitOutcome =
  | { kind: 'checked'; result: LimitResult }
  | { kind: 'backend-error'; action: 'allow' | 'deny'; error: string };

const MAX_KEY_PART = 256;

/** The bucket key: policy, rule, then the caller or the header's value (missing header → ''). */
export function bucketKey(
  limit: CompiledRateLimit,
  request: NormalizedRequest,
  caller: string,
): string {
  const part = limit.per.kind === 'caller' ? caller : (request.headers[limit.per.name] ?? '');
  // Header values are caller-controlled: bound key size without merging distinct values.
  return (
    limit.keyPrefix +
    (part.length > MAX_KEY_PART
      ? `#${createHash('sha256').update(part).digest('base64url')}`
      : part)
  );
}

/** Within budget? A store failure is reported with the rule's onBackendError action. */
export async function applyLimit(
  store: BucketStore,
  limit: CompiledRateLimit,
  key: string,
): Promise<LimitOutcome> {
  try {
    const result = await store.take(key, limit, limit.cost);
    return { kind: 'checked', result };
  } catch (err) {
    return { kind: 'backend-error', action: limit.onBackendError, error: (err as Error).message };
  }
}
