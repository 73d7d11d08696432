export { K8sAuthModule } from './lib/k8s-auth.module';
export type {
  K8sAuthModuleOptions,
  TokenSourceOptions,
  ProjectedTokenFileOptions,
  TokenRequestOptions,
  TokenVerification,
} from './lib/k8s-auth-options.interface';
export { ServiceAccountGuard } from './lib/service-account.guard';
export { Audience, AllowServiceAccounts, AllowNamespaces, PublicRoute } from './lib/k8s-auth.decorators';
export { RequireAccess } from './lib/require-access.decorator';
export { Caller } from './lib/caller.decorator';
export { API_SERVER_AUDIENCE } from './lib/k8s-auth.constants';
export { ReviewUnavailableError, TOKEN_AUTHENTICATOR } from './lib/authentication.types';
export type { CallerIdentity, RefusalReason, ReviewResult, TokenAuthenticator } from './lib/authentication.types';
export type { GuardedRequest } from './lib/service-account.guard';
export { AccessReviewer } from './lib/access-reviewer';
export type { AccessDecision, ReviewSubject, SubjectAccessReviewSpec } from './lib/access-reviewer';
export { InvalidRouteParameterError } from './lib/access-check';
export type {
  AccessAttributes,
  AccessCheck,
  NonResourceAccessCheck,
  NonResourceAttributes,
  ResourceAccessCheck,
  ResourceAttributes,
  RouteParam,
} from './lib/access-check';
export { TokenSources } from './lib/token-sources';
export { TokenUnavailableError } from './lib/token-source';
export type { TokenSource } from './lib/token-source';
export { attachServiceAccountToken } from './lib/outgoing-token.axios';
export type { AttachTokenOptions, AxiosInstanceLike } from './lib/outgoing-token.axios';
export { PolicyConfigurationError } from './lib/caller-policy';
export type { TokenHeader } from './lib/bearer-token';
export { logSafe } from './lib/log-safe';
