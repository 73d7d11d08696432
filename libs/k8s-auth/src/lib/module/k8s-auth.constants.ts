/** Reflect-metadata keys of the decorators. */
export const AUDIENCE_KEY = 'k8s-auth:audience';
export const ALLOW_SERVICE_ACCOUNTS_KEY = 'k8s-auth:allow-service-accounts';
export const ALLOW_NAMESPACES_KEY = 'k8s-auth:allow-namespaces';
export const PUBLIC_ROUTE_KEY = 'k8s-auth:public-route';
export const REQUIRE_ACCESS_KEY = 'k8s-auth:require-access';

/** The `audiences` option value that reviews without an audience: the API server's own (legacy tokens). */
export const API_SERVER_AUDIENCE = 'api-server' as const;

/** The ways a caller's token can be verified (the `verification` option); see `TokenVerification`. */
export const TOKEN_VERIFICATIONS = ['tokenReview', 'local', 'local+review', 'local+watch'] as const;

/**
 * What start-up does about a route that carries the library's decorators but that no ServiceAccountGuard covers
 * (the `unguardedRoutes` option).
 */
export const UNGUARDED_ROUTE_ACTIONS = ['error', 'warn'] as const;

/** The one table of option defaults, applied by `resolveOptions` at start-up: the classes never read it. */
export const DEFAULTS = {
  requestTimeoutMs: 5_000,
  retries: 2,
  tokenHeaders: ['authorization'] as const,
  maxTokenBytes: 16 * 1024,
  cacheTtlMs: 60_000,
  negativeCacheTtlMs: 5_000,
  // As the kubelet's webhook authorizer: allowed 5 min, denied 30 s.
  accessCacheTtlMs: 5 * 60_000,
  accessDenyCacheTtlMs: 30_000,
  maxCacheEntries: 10_000,
  retryAfterSeconds: 5,
  maxReviewsInFlight: 64,
  maxAccessReviewsInFlight: 64,
  verification: 'tokenReview',
  clockSkewSeconds: 60,
  jwksRefreshIntervalMs: 5 * 60_000,
  jwksMinRefreshIntervalMs: 1_000,
  watchStalenessMs: 2_000,
  tokenRefreshIntervalMs: 5 * 60_000,
  tokenWaitForFileMs: 0,
  tokenExpirationSeconds: 600,
  projectedTokenDirectory: '/var/run/secrets/tokens',
  unguardedRoutes: 'error',
} as const;
