import { defaultAudience, isMtlsSource } from '../../identity/resolve';
import { admittedBy, callerOf, policyOf, type Stage } from '../context';
import { deny } from '../decision';

/**
 * The credential that named the caller must be one the admitting rule accepts: a JWT-SVID
 * verified against some audience of the policy must carry this rule's, and a rule that
 * requires mTLS refuses a bearer token.
 */
export const credentialFit: Stage = {
  name: 'credential-fit',
  run(ctx) {
    const identity = callerOf(ctx);
    const policy = policyOf(ctx);
    const rule = admittedBy(ctx);
    if (identity.audiences !== undefined) {
      const wanted = rule.audience ?? defaultAudience(ctx.services.identity, policy.audience);
      if (wanted === undefined || !identity.audiences.includes(wanted)) {
        // A credential that does not fit is an identity failure, which dry-run never softens.
        ctx.policyDecides = false;
        return deny(
          401,
          'invalid_identity',
          `JWT-SVID: token audience does not include '${wanted ?? '(none configured)'}', required by rule ${rule.name}`,
        );
      }
    }
    if (rule.requireMtls && !isMtlsSource(identity.source)) {
      return deny(
        403,
        'mtls_required',
        `rule ${rule.name} of policy ${policy.name} requires an mTLS identity, not a ${identity.source} credential`,
      );
    }
    return undefined;
  },
};
