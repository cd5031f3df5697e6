import { normalizeCheckRequest } from '../../request/normalize';
import type { Stage } from '../context';
import { deny } from '../decision';

/** Envoy's CheckRequest, every field hostile, read into the few fields the decision needs. */
export const normalization: Stage = {
  name: 'normalize',
  run(ctx) {
    const normalized = normalizeCheckRequest(ctx.input);
    if (!normalized.ok)
      return deny(403, 'malformed_request', `malformed request: ${normalized.reason}`);
    ctx.request = normalized.request;
    return undefined;
  },
};
