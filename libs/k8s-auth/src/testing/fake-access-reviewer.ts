import type { AccessAttributes } from '../lib/authz/access-check';
import type { AccessDecision, AccessReviewer } from '../lib/authz/access-reviewer';
import type { CallerIdentity } from '../lib/authn/authentication.types';

/**
 * An `AccessReviewer` that decides `@RequireAccess` checks with `allow` instead of RBAC, for
 * `overrideProvider(AccessReviewer).useValue(fakeAccessReviewer((caller, check) => ...))` beside a fake
 * authenticator: the app starts with no API server, and each check of a route is put to `allow` (the caller and the
 * check with the route's parameters filled in). What RBAC decides is for the control plane to prove.
 */
export function fakeAccessReviewer(
  allow: (caller: CallerIdentity, check: AccessAttributes) => boolean,
): Pick<AccessReviewer, 'review'> {
  return {
    review: async (caller, check): Promise<AccessDecision> => ({ allowed: allow(caller, check) }),
  };
}
