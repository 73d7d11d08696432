import { TOKEN_VERIFICATIONS, type TokenVerification } from '@k8s-auth/nestjs';

export interface SecretStoreConfig {
  /**
   * `projected`: callers send a token meant for this service (`audience`). `legacy`: callers send
   * their default service-account token and the store reviews it without an audience, as the seed's
   * first variant did; any holder of such a token could replay it here, so prefer `projected`.
   */
  mode: 'projected' | 'legacy';
  /** This service's audience in `projected` mode. */
  audience: string;
  /** How callers' tokens are verified (`VERIFICATION`); the local modes need `projected`. @default 'tokenReview' */
  verification: TokenVerification;
  /**
   * Bound of each of the guard's answer caches (`CACHE_MAX_ENTRIES`): accepted and refused tokens, allowed and denied
   * SubjectAccessReviews. @default the library's (`maxCacheEntries`)
   */
  maxCacheEntries?: number;
  /**
   * How long an accepted token is served from the cache (`CACHE_TTL_SECONDS`, whole seconds; 0 turns that cache off),
   * never past the token's `exp`. @default the library's (`cacheTtlMs`, 60 s)
   */
  cacheTtlMs?: number;
  /**
   * `local+watch` only (`WATCH_STALENESS_MS`): how long its watches count as fresh without a sign of life; past it,
   * every token goes to TokenReview. @default the library's (`watchStalenessMs`, 2 s)
   */
  watchStalenessMs?: number;
}

export function readSecretStoreConfig(env: NodeJS.ProcessEnv = process.env): SecretStoreConfig {
  const mode = env['AUTH_MODE'] ?? 'projected';
  if (mode !== 'projected' && mode !== 'legacy') {
    throw new Error(`AUTH_MODE must be 'projected' or 'legacy', not '${mode}'`);
  }
  const verification = env['VERIFICATION'] ?? 'tokenReview';
  if (!isTokenVerification(verification)) {
    throw new Error(`VERIFICATION must be one of ${TOKEN_VERIFICATIONS.join(', ')}, not '${verification}'`);
  }
  if (mode === 'legacy' && verification !== 'tokenReview') {
    throw new Error(`VERIFICATION=${verification} needs AUTH_MODE=projected: legacy tokens are only reviewed`);
  }
  return {
    mode,
    audience: env['AUDIENCE'] ?? 'secret-store',
    verification,
    maxCacheEntries: readCount(env, 'CACHE_MAX_ENTRIES'),
    cacheTtlMs: scaled(readCount(env, 'CACHE_TTL_SECONDS'), 1000),
    watchStalenessMs: readPositive(env, 'WATCH_STALENESS_MS'),
  };
}

function isTokenVerification(value: string): value is TokenVerification {
  return (TOKEN_VERIFICATIONS as readonly string[]).includes(value);
}

/** A non-negative integer from `env[name]`, or undefined when it is not set. */
function readCount(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  if (!/^\d{1,9}$/.test(text)) throw new Error(`${name} must be a non-negative integer, not '${text}'`);
  return Number(text);
}

/** A positive integer from `env[name]`, or undefined when it is not set. */
function readPositive(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  // Nine digits at most: below Node's timer limit (2^31 - 1 ms), which the library checks under its own names.
  if (!/^\d{1,9}$/.test(text) || Number(text) === 0)
    throw new Error(`${name} must be a positive integer, not '${text}'`);
  return Number(text);
}

function scaled(value: number | undefined, factor: number): number | undefined {
  return value === undefined ? undefined : value * factor;
}
