import { createHash } from 'node:crypto';
import type { CompiledRateLimit } from '../policy/types';
import type { NormalizedRequest } from '../request/normalize';

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
