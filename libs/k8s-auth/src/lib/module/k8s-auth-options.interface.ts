import type { Registry } from 'prom-client';
import type { TokenHeader } from '../guard/bearer-token';
import type { API_SERVER_AUDIENCE, TOKEN_VERIFICATIONS, UNGUARDED_ROUTE_ACTIONS } from './k8s-auth.constants';

/** A token read from a file that the kubelet projects and rotates. */
export interface ProjectedTokenFileOptions {
  /**
   * Path of the token file. The legacy `/var/run/secrets/kubernetes.io/serviceaccount/token` works too.
   * @default `/var/run/secrets/tokens/<source name>`
   */
  file?: string;
  /** How often the file is read again, besides at 80 % of the token's life. @default 300_000 (5 min) */
  refreshIntervalMs?: number;
  /** How long start-up waits for the kubelet to write the file before it fails. @default 0 */
  waitForFileMs?: number;
}

/** Tokens minted through the TokenRequest API: for running outside the cluster with a kubeconfig. */
export interface TokenRequestOptions {
  /** The service account to mint for, `namespace:name`. */
  serviceAccount: string;
  /** The audience the token is for (the callee's). */
  audience: string;
  /** Token lifetime; the API server's minimum is 600. @default 600 */
  expirationSeconds?: number;
}

export type TokenSourceOptions = ProjectedTokenFileOptions | TokenRequestOptions;

/**
 * How the guard verifies a caller's token:
 * - `tokenReview`: asks the API server (TokenReview) once per token and caches the answer.
 * - `local`: verifies the JWT itself against the keys the API server publishes (OIDC discovery), with no call per
 *   token: keeps answering while the API server is down, but accepts the token of a deleted pod or service account
 *   until the token expires.
 * - `local+review`: verifies locally first (forgeries never reach the API server), then confirms each new token once
 *   with a TokenReview, cached as in `tokenReview`, so deletions are still seen.
 * - `local+watch`: verifies locally, then checks on every request that the token's service account and pod still
 *   exist with the uids in the token, from watches (list+watch, this service's credentials) of the callers the
 *   allowlists name: a deletion is seen within a second, with no TokenReview. Other callers, and tokens bound to a
 *   Secret or a node only, get a TokenReview (cached); so do new tokens while the watches are stale.
 */
export type TokenVerification = (typeof TOKEN_VERIFICATIONS)[number];

/** See the `unguardedRoutes` option. */
export type UnguardedRouteAction = (typeof UNGUARDED_ROUTE_ACTIONS)[number];

export interface K8sAuthModuleOptions {
  /**
   * A kubeconfig file for reaching the API server.
   * @default in-cluster credentials inside a pod, else `$KUBECONFIG`, else `~/.kube/config`
   */
  kubeconfig?: string;
  /** Deadline of each call to the API server, retries included. @default 5000 */
  requestTimeoutMs?: number;
  /** Retries after a connection error, a 429 or a 5xx. @default 2 */
  retries?: number;
  /**
   * The audiences a guarded route asks for when it has no `@Audience()`: normally this service's own
   * name. `'api-server'` reviews without an audience, which accepts tokens meant for the API server
   * (legacy tokens, default pod tokens): any holder of such a token can replay it here. Avoid it.
   */
  audiences?: string[] | typeof API_SERVER_AUDIENCE;
  /** Request headers the caller's token is read from; a request must use exactly one. @default ['authorization'] */
  tokenHeaders?: TokenHeader[];
  /** Larger tokens are refused without a review. @default 16384 */
  maxTokenBytes?: number;
  /** How long an accepted review is reused (never past the token's `exp`). @default 60_000 */
  cacheTtlMs?: number;
  /** How long a refused token is refused without asking again; refusals are kept apart from acceptances. @default 5_000 */
  negativeCacheTtlMs?: number;
  /**
   * TokenReviews this process waits for at once. A new token beyond them is answered 503 with `Retry-After` at once,
   * while cached callers are served as usual: a flood of new (forged) tokens cannot queue unbounded work on the API
   * server. The default suits a pod of a fraction of a CPU; raise it for a service that meets many new tokens per
   * second. @default 64
   */
  maxReviewsInFlight?: number;
  /**
   * SubjectAccessReviews (`@RequireAccess`) this process waits for at once. A review beyond them is answered 503 with
   * `Retry-After` at once, while cached decisions are served as usual. The bound is apart from `maxReviewsInFlight`:
   * a flood of either kind of review leaves the other's room free. @default 64
   */
  maxAccessReviewsInFlight?: number;
  /**
   * How long an allowing SubjectAccessReview (`@RequireAccess`) is reused: a revoked RoleBinding takes
   * effect after at most this long. @default 300_000 (5 min, as the kubelet)
   */
  accessCacheTtlMs?: number;
  /**
   * How long a denying SubjectAccessReview is reused: a new RoleBinding takes effect after at most
   * this long. @default 30_000 (30 s, as the kubelet)
   */
  accessDenyCacheTtlMs?: number;
  /**
   * Bound of each answer cache (accepted tokens, refused tokens, allowed and denied SubjectAccessReviews); least
   * recently used entries go first. Refusals and denials are kept apart from acceptances and allowed decisions, so no
   * number of them can evict one of those. 0 turns caching off. @default 10_000
   */
  maxCacheEntries?: number;
  /** How tokens are verified; see {@link TokenVerification}. @default 'tokenReview' */
  verification?: TokenVerification;
  /**
   * Clock skew allowed on a token's `exp`, `nbf` and `iat`. A token whose own `exp` passed longer ago than this is
   * refused without a TokenReview (read without verifying: a refusal needs no trust). @default 60
   */
  clockSkewSeconds?: number;
  /**
   * Local verification: the API server's signing keys are fetched again after this long, in the background (the
   * keys fetched before are kept while it cannot be reached). @default 300_000 (5 min)
   */
  jwksRefreshIntervalMs?: number;
  /**
   * Local verification: fetches of the keys start at most once per this interval, whatever asks for them. A token
   * signed with a key id not held waits for the next fetch (at most this long), so a key the API server has just added
   * is taken on its first token; a key id that fetch did not find is then refused at once for 10 s, without a fetch.
   * Under a flood of unknown key ids the API server gets one fetch per interval, and a new key still waits no longer.
   * While no keys are held at all (the fetch at start-up failed), tokens are answered 503 between the attempts.
   * @default 1_000
   */
  jwksMinRefreshIntervalMs?: number;
  /**
   * `local+watch`: how old the last proof that the watches deliver may be before what they hold counts as stale. The
   * proof is an answered PING on their HTTP/2 connection to the API server (sent four times per bound), so a silent
   * partition is noticed within the bound, and a deletion made meanwhile is not missed for longer. While stale, every
   * token goes to TokenReview, cached as in `tokenReview` mode (503 if it cannot be made). @default 2_000
   */
  watchStalenessMs?: number;
  /** `Retry-After` of a 503 when the API server cannot answer. @default 5 */
  retryAfterSeconds?: number;
  /** This service's own tokens for outgoing calls, by name (e.g. the callee's audience). */
  tokenSources?: Record<string, TokenSourceOptions>;
  /**
   * What start-up does about a route that carries `@Audience`, `@AllowServiceAccounts`, `@AllowNamespaces` or
   * `@RequireAccess` (on itself or its controller) but that no ServiceAccountGuard covers (no `APP_GUARD`, no
   * `@UseGuards`): anyone may call it. `'error'` stops start-up with an error naming every such route; `'warn'` logs
   * it and goes on, for an app that guards those routes another way (a guard of its own, `app.useGlobalGuards()`).
   * @default 'error'
   */
  unguardedRoutes?: UnguardedRouteAction;
  /** Where review counters and latencies go; `false` for none. @default prom-client's global registry */
  metrics?: Registry | false;
}
