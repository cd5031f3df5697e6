import { bodyContractViolation } from '../../policy/features/payload';
import { admittedBy, policyOf, requestOf, type Stage } from '../context';
import { deny } from '../decision';

/** The rule's body contract: size, media type and JSON shape of what Envoy forwarded. */
export const bodyContract: Stage = {
  name: 'body-contract',
  run(ctx) {
    const rule = admittedBy(ctx);
    if (rule.body === null) return undefined;
    const violation = bodyContractViolation(rule.body, requestOf(ctx));
    if (violation === undefined) return undefined;
    return deny(
      403,
      violation.malformed ? 'malformed_request' : 'payload_rejected',
      `rule ${rule.name} of policy ${policyOf(ctx).name}: ${violation.reason}`,
    );
  },
};
