import type { Provider } from '@nestjs/common';
import { TOKEN_AUTHENTICATOR, type TokenAuthenticator } from './authentication.types';
import { LocalThenReview } from './local-then-review.authenticator';
import { type AllowlistedCallers, BindingWatches } from './watch/binding-watches';
import { CachedAuthenticator } from './cached.authenticator';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';
import { KubernetesApiClient } from '../kube/kubernetes-api.client';
import { LocalJwtAuthenticator } from './local-jwt.authenticator';
import { RoutePolicies } from '../guard/route-policy';
import { SigningKeys } from './signing-keys';
import { TokenReviewAuthenticator } from './token-review.authenticator';
import { BindingWatchAuthenticator } from './watch/binding-watch.authenticator';

// The authenticators this module made: they ask the API server. One a test provides instead needs no credentials.
const madeByModule = new WeakSet<object>();

/** Whether `authenticator` is one of this module's, which asks the API server (not one a test put in its place). */
export function asksApiServer(authenticator: TokenAuthenticator): boolean {
  return madeByModule.has(authenticator);
}

/**
 * The guard's authenticator, as the `verification` option composes it, with its answers cached. `options` are
 * resolved and checked already (`resolveOptions`), so a `local` mode has this service's own audiences. `callers`:
 * whom the routes' allowlists name, which `local+watch` watches (the module's RoutePolicies).
 */
export function createTokenAuthenticator(
  options: ResolvedOptions,
  api: KubernetesApiClient,
  metrics: K8sAuthMetrics,
  callers: AllowlistedCallers,
): TokenAuthenticator {
  const { verification } = options;
  const clockSkewMs = options.clockSkewSeconds * 1000;
  const review = new TokenReviewAuthenticator(api, metrics, { clockSkewMs, maxInFlight: options.maxReviewsInFlight });
  const answerCache = {
    maxEntries: options.maxCacheEntries,
    ttlMs: options.cacheTtlMs,
    refusalTtlMs: options.negativeCacheTtlMs,
  };
  const cached = (inner: TokenAuthenticator) => new CachedAuthenticator(inner, answerCache, metrics);
  let authenticator: TokenAuthenticator = review;
  if (verification !== 'tokenReview') {
    const keys = new SigningKeys(api, metrics, {
      refreshIntervalMs: options.jwksRefreshIntervalMs,
      minRefreshIntervalMs: options.jwksMinRefreshIntervalMs,
    });
    // Fetched as the app starts, so the first request does not wait; a failure is logged, and requests retry.
    keys.fetch().catch(() => undefined);
    const local = new LocalJwtAuthenticator(keys, { clockSkewMs, refuseUnknownBindings: verification === 'local' });
    if (verification === 'local+watch') {
      const watches = new BindingWatches(api, {
        stalenessMs: options.watchStalenessMs,
        maxTombstones: options.maxCacheEntries,
      });
      // Caches inside: the binding check runs on every request, after the cached local verification.
      return new BindingWatchAuthenticator(cached(local), cached(review), watches, callers);
    }
    authenticator = verification === 'local' ? local : new LocalThenReview(local, review);
  }
  return cached(authenticator);
}

export const tokenAuthenticatorProvider: Provider = {
  provide: TOKEN_AUTHENTICATOR,
  useFactory: (...args: Parameters<typeof createTokenAuthenticator>) => {
    const authenticator = createTokenAuthenticator(...args);
    madeByModule.add(authenticator);
    return authenticator;
  },
  inject: [RESOLVED_OPTIONS, KubernetesApiClient, K8sAuthMetrics, RoutePolicies],
};
