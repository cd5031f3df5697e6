import { residencyViolation } from '../../policy/features/residency';
import { admittedBy, policyOf, requestOf, type Stage } from '../context';
import { deny } from '../decision';

/** The rule's data residency: where the request says its data lives or goes. */
export const residency: Stage = {
  name: 'residency',
  run(ctx) {
    const rule = admittedBy(ctx);
    if (rule.residency === null) return undefined;
    const violation = residencyViolation(rule.residency, requestOf(ctx));
    return violation === undefined
      ? undefined
      : deny(
          403,
          'residency_violation',
          `rule ${rule.name} of policy ${policyOf(ctx).name}: ${violation}`,
        );
  },
};
