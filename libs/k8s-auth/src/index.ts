export { K8sAuthModule } from './lib/module/k8s-auth.module';
export type {
  K8sAuthModuleOptions,
  TokenSourceOptions,
  ProjectedTokenFileOptions,
  TokenRequestOptions,
  TokenVerification,
} from './lib/module/k8s-auth-options.interface';
export type { ResolvedOptions } from './lib/module/resolved-options';
export { ServiceAccountGuard } from './lib/guard/service-account.guard';
export { Audience, AllowServiceAccounts, AllowNamespaces, PublicRoute } from './lib/guard/k8s-auth.decorators';
export { RequireAccess } from './lib/authz/require-access.decorator';
export { Caller } from './lib/guard/caller.decorator';
export { API_SERVER_AUDIENCE, TOKEN_VERIFICATIONS } from './lib/module/k8s-auth.constants';
export {
  AuthenticationUnavailableError,
  ReviewUnavailableError,
  TOKEN_AUTHENTICATOR,
} from './lib/authn/authentication.types';
export type {
  AuthenticationResult,
  CallerIdentity,
  RefusalReason,
  ReviewResult,
  TokenAuthenticator,
} from './lib/authn/authentication.types';
export type { GuardedRequest } from './lib/guard/service-account.guard';
export { AccessReviewer } from './lib/authz/access-reviewer';
export type { AccessDecision, ReviewSubject, SubjectAccessReviewSpec } from './lib/authz/access-reviewer';
export { InvalidRouteParameterError } from './lib/authz/access-check';
export type {
  AccessAttributes,
  AccessCheck,
  NonResourceAccessCheck,
  NonResourceAttributes,
  ResourceAccessCheck,
  ResourceAttributes,
  RouteParam,
} from './lib/authz/access-check';
export { TokenSources } from './lib/outgoing/named-token-sources';
export { TokenUnavailableError } from './lib/outgoing/token-source';
export type { TokenSource } from './lib/outgoing/token-source';
export { attachServiceAccountToken } from './lib/outgoing/outgoing-token.axios';
export type { AttachTokenOptions, AxiosInstanceLike } from './lib/outgoing/outgoing-token.axios';
export { fetchWithServiceAccountToken } from './lib/outgoing/outgoing-token.fetch';
export type { FetchTokenOptions } from './lib/outgoing/outgoing-token.fetch';
export { PolicyConfigurationError } from './lib/guard/route-policy';
export { TOKEN_HEADERS } from './lib/guard/bearer-token';
export type { TokenHeader } from './lib/guard/bearer-token';
export { logSafe } from './lib/observability/log-safe';
