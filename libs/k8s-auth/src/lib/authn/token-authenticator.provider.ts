import type { Provider } from '@nestjs/common';
import { type AuthenticationResult, TOKEN_AUTHENTICATOR, type TokenAuthenticator } from './authentication.types';
import { BindingWatches } from './watch/binding-watches';
import { CachedAuthenticator } from './cached.authenticator';
import { API_SERVER_AUDIENCE, DEFAULTS } from '../module/k8s-auth.constants';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import { MODULE_OPTIONS_TOKEN } from '../module/k8s-auth.module-definition';
import type { K8sAuthModuleOptions, TokenVerification } from '../module/k8s-auth-options.interface';
import { KubernetesApiClient } from '../kube/kubernetes-api.client';
import { LocalJwtAuthenticator } from './local-jwt.authenticator';
import { nonNegative, positive } from '../module/option-checks';
import { RoutePolicies } from '../guard/route-policy';
import { SigningKeys } from './signing-keys';
import { TokenReviewAuthenticator } from './token-review.authenticator';
import { BindingWatchAuthenticator } from './watch/binding-watch.authenticator';

const VERIFICATIONS: readonly TokenVerification[] = ['tokenReview', 'local', 'local+review', 'local+watch'];

/**
 * `local+review`: local verification first, so forgeries never reach the API server, then one TokenReview, which
 * also knows whether the token's pod and service account still exist.
 */
export class LocalThenReview implements TokenAuthenticator {
  constructor(
    private readonly local: TokenAuthenticator,
    private readonly review: TokenAuthenticator,
  ) {}

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    const local = await this.local.authenticate(token, audiences);
    return local.accepted ? this.review.authenticate(token, audiences) : local;
  }
}

/** The guard's authenticator, as the `verification` option composes it, with its answers cached. */
export function createTokenAuthenticator(
  options: K8sAuthModuleOptions,
  api: KubernetesApiClient,
  metrics: K8sAuthMetrics,
  policies?: RoutePolicies,
): TokenAuthenticator {
  const verification = options.verification ?? DEFAULTS.verification;
  if (!VERIFICATIONS.includes(verification)) {
    throw new Error(
      `verification must be 'tokenReview', 'local', 'local+review' or 'local+watch', not '${String(verification)}'`,
    );
  }
  if (verification !== 'tokenReview' && options.audiences === API_SERVER_AUDIENCE) {
    throw new Error(
      `verification '${verification}' checks the token's audience itself and needs this service's own ` +
        "audience: set the option 'audiences' to it (tokens meant for the API server are not verified locally)",
    );
  }
  const clockSkewMs = nonNegative('clockSkewSeconds', options.clockSkewSeconds ?? DEFAULTS.clockSkewSeconds) * 1000;
  const review = new TokenReviewAuthenticator(api, metrics, {
    clockSkewMs,
    maxInFlight: positive('maxReviewsInFlight', options.maxReviewsInFlight ?? DEFAULTS.maxReviewsInFlight),
  });
  const cached = (inner: TokenAuthenticator) =>
    new CachedAuthenticator(
      inner,
      {
        maxEntries: options.maxCacheEntries ?? DEFAULTS.maxCacheEntries,
        ttlMs: options.cacheTtlMs ?? DEFAULTS.cacheTtlMs,
        refusalTtlMs: options.negativeCacheTtlMs ?? DEFAULTS.negativeCacheTtlMs,
      },
      metrics,
    );
  let authenticator: TokenAuthenticator = review;
  if (verification !== 'tokenReview') {
    const keys = new SigningKeys(api, metrics, {
      refreshIntervalMs: nonNegative(
        'jwksRefreshIntervalMs',
        options.jwksRefreshIntervalMs ?? DEFAULTS.jwksRefreshIntervalMs,
      ),
      minRefreshIntervalMs: nonNegative(
        'jwksMinRefreshIntervalMs',
        options.jwksMinRefreshIntervalMs ?? DEFAULTS.jwksMinRefreshIntervalMs,
      ),
    });
    // Fetched as the app starts, so the first request does not wait; a failure is logged, and requests retry.
    keys.fetch().catch(() => undefined);
    const local = new LocalJwtAuthenticator(keys, { clockSkewMs, refuseUnknownBindings: verification === 'local' });
    if (verification === 'local+watch') {
      if (!policies) throw new Error("verification 'local+watch' needs the routes' allowlists (RoutePolicies)");
      const stalenessMs = nonNegative('watchStalenessMs', options.watchStalenessMs ?? DEFAULTS.watchStalenessMs);
      const watches = new BindingWatches(api, {
        stalenessMs,
        maxTombstones: options.maxCacheEntries ?? DEFAULTS.maxCacheEntries,
      });
      // Caches inside: the binding check runs on every request, after the cached local verification.
      return new BindingWatchAuthenticator(cached(local), cached(review), watches, policies);
    }
    authenticator = verification === 'local' ? local : new LocalThenReview(local, review);
  }
  return cached(authenticator);
}

export const tokenAuthenticatorProvider: Provider = {
  provide: TOKEN_AUTHENTICATOR,
  useFactory: createTokenAuthenticator,
  inject: [MODULE_OPTIONS_TOKEN, KubernetesApiClient, K8sAuthMetrics, RoutePolicies],
};
