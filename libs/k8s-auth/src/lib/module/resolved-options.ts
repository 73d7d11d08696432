import type { FactoryProvider } from '@nestjs/common';
import { register as globalRegistry, type Registry } from 'prom-client';
import { TOKEN_HEADERS, type TokenHeader } from '../guard/bearer-token';
import { API_SERVER_AUDIENCE, DEFAULTS, TOKEN_VERIFICATIONS, UNGUARDED_ROUTE_ACTIONS } from './k8s-auth.constants';
import type { K8sAuthModuleOptions, TokenVerification, UnguardedRouteAction } from './k8s-auth-options.interface';
import { MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import {
  invalidOption,
  isPlainObject,
  nonNegative,
  nonNegativeInteger,
  oneOf,
  positiveInteger,
  shown,
  timerMs,
} from './option-checks';
import { resolveTokenSources, type ResolvedTokenSource } from './resolved-token-sources';

/** The injection token of {@link ResolvedOptions}: what every part of the module reads its options from. */
export const RESOLVED_OPTIONS = Symbol('K8sAuthResolvedOptions');

/**
 * The module options with every default applied and every value checked, once, as the module starts: the classes
 * that read them hold no default and run no check of their own. Fields as in `K8sAuthModuleOptions`.
 */
export interface ResolvedOptions {
  /** Undefined: in-cluster credentials, else `$KUBECONFIG`, else `~/.kube/config`. */
  readonly kubeconfig: string | undefined;
  readonly requestTimeoutMs: number;
  readonly retries: number;
  /** Undefined: every guarded route names its audience with `@Audience()`. */
  readonly audiences: readonly string[] | typeof API_SERVER_AUDIENCE | undefined;
  /** Distinct names. */
  readonly tokenHeaders: readonly TokenHeader[];
  readonly maxTokenBytes: number;
  readonly cacheTtlMs: number;
  readonly negativeCacheTtlMs: number;
  readonly maxReviewsInFlight: number;
  readonly maxAccessReviewsInFlight: number;
  readonly accessCacheTtlMs: number;
  readonly accessDenyCacheTtlMs: number;
  readonly maxCacheEntries: number;
  readonly verification: TokenVerification;
  readonly clockSkewSeconds: number;
  readonly jwksRefreshIntervalMs: number;
  readonly jwksMinRefreshIntervalMs: number;
  readonly watchStalenessMs: number;
  readonly retryAfterSeconds: number;
  readonly unguardedRoutes: UnguardedRouteAction;
  /** By name. */
  readonly tokenSources: ReadonlyMap<string, ResolvedTokenSource>;
  readonly metrics: Registry | false;
}

/**
 * Applies the defaults of {@link DEFAULTS} and checks every option; `null` counts as unset, as `undefined` does.
 * @throws Error naming the first option that is out of range, the value given and what it accepts.
 */
export function resolveOptions(options: K8sAuthModuleOptions): ResolvedOptions {
  if (!isPlainObject(options as unknown)) {
    throw new Error(
      "K8sAuthModule options must be an object (forRoot's argument, or what forRootAsync's useFactory returns), " +
        `got ${shown(options)}`,
    );
  }
  const verification = oneOf('verification', options.verification ?? DEFAULTS.verification, TOKEN_VERIFICATIONS);
  const audiences = resolveAudiences(options.audiences);
  if (verification !== 'tokenReview' && audiences === API_SERVER_AUDIENCE) {
    throw invalidOption(
      'audiences',
      `this service's own audience with verification ${JSON.stringify(verification)}, which checks the token's ` +
        'audience itself (tokens meant for the API server are not verified locally)',
      audiences,
    );
  }
  // A number option as given, or its default, checked by `rule`, which names it in its message.
  const numeric = (name: NumericOption, rule: (name: string, value: unknown) => number) =>
    rule(name, options[name] ?? DEFAULTS[name]);
  const positiveTimer = (name: string, value: unknown) => timerMs(name, value, 'positive');
  const timer = (name: string, value: unknown) => timerMs(name, value, 'zero');
  return Object.freeze({
    kubeconfig: resolveKubeconfig(options.kubeconfig),
    audiences,
    tokenHeaders: resolveTokenHeaders(options.tokenHeaders ?? DEFAULTS.tokenHeaders),
    verification,
    unguardedRoutes: oneOf(
      'unguardedRoutes',
      options.unguardedRoutes ?? DEFAULTS.unguardedRoutes,
      UNGUARDED_ROUTE_ACTIONS,
    ),
    tokenSources: resolveTokenSources(options.tokenSources),
    metrics: resolveMetrics(options.metrics),
    requestTimeoutMs: numeric('requestTimeoutMs', positiveTimer),
    retries: numeric('retries', nonNegativeInteger),
    maxTokenBytes: numeric('maxTokenBytes', positiveInteger),
    cacheTtlMs: numeric('cacheTtlMs', nonNegative),
    negativeCacheTtlMs: numeric('negativeCacheTtlMs', nonNegative),
    maxReviewsInFlight: numeric('maxReviewsInFlight', positiveInteger),
    maxAccessReviewsInFlight: numeric('maxAccessReviewsInFlight', positiveInteger),
    accessCacheTtlMs: numeric('accessCacheTtlMs', nonNegative),
    accessDenyCacheTtlMs: numeric('accessDenyCacheTtlMs', nonNegative),
    maxCacheEntries: numeric('maxCacheEntries', nonNegativeInteger),
    clockSkewSeconds: numeric('clockSkewSeconds', nonNegative),
    jwksRefreshIntervalMs: numeric('jwksRefreshIntervalMs', nonNegative),
    jwksMinRefreshIntervalMs: numeric('jwksMinRefreshIntervalMs', timer),
    watchStalenessMs: numeric('watchStalenessMs', positiveTimer),
    // Retry-After takes whole seconds (RFC 9110 §10.2.3).
    retryAfterSeconds: numeric('retryAfterSeconds', nonNegativeInteger),
  });
}

/** The options that are numbers, each with a default. */
type NumericOption = {
  [K in keyof K8sAuthModuleOptions & keyof typeof DEFAULTS]-?: NonNullable<K8sAuthModuleOptions[K]> extends number
    ? K
    : never;
}[keyof K8sAuthModuleOptions & keyof typeof DEFAULTS];

/** Registered by the module: a bad option stops start-up (`NestFactory.create`, `app.init()`) with its message. */
export const resolvedOptionsProvider: FactoryProvider<ResolvedOptions> = {
  provide: RESOLVED_OPTIONS,
  useFactory: resolveOptions,
  inject: [MODULE_OPTIONS_TOKEN],
};

function resolveAudiences(audiences: unknown): ResolvedOptions['audiences'] {
  if (audiences === undefined || audiences === null) return undefined;
  if (audiences === API_SERVER_AUDIENCE) return audiences;
  if (
    !Array.isArray(audiences) ||
    audiences.length === 0 ||
    !audiences.every((audience) => typeof audience === 'string' && audience !== '')
  ) {
    throw invalidOption(
      'audiences',
      `a non-empty list of audiences (non-empty strings) or ${JSON.stringify(API_SERVER_AUDIENCE)}; leave it out ` +
        'to name the audience of each guarded route with @Audience()',
      audiences,
    );
  }
  return Object.freeze([...(audiences as string[])]);
}

function resolveTokenHeaders(headers: unknown): readonly TokenHeader[] {
  if (
    !Array.isArray(headers) ||
    headers.length === 0 ||
    !headers.every((header) => (TOKEN_HEADERS as readonly unknown[]).includes(header))
  ) {
    throw invalidOption(
      'tokenHeaders',
      `a non-empty list of ${TOKEN_HEADERS.map((h) => JSON.stringify(h)).join(' and/or ')} (in lower case)`,
      headers,
    );
  }
  return Object.freeze([...new Set(headers as TokenHeader[])]);
}

/** An empty string counts as unset, as an empty `KUBECONFIG` does. */
function resolveKubeconfig(kubeconfig: unknown): string | undefined {
  if (kubeconfig === undefined || kubeconfig === null || kubeconfig === '') return undefined;
  if (typeof kubeconfig !== 'string') throw invalidOption('kubeconfig', 'the path of a kubeconfig file', kubeconfig);
  return kubeconfig;
}

function resolveMetrics(metrics: unknown): Registry | false {
  if (metrics === undefined || metrics === null) return globalRegistry;
  if (metrics === false) return false;
  // Duck-typed: an app may hold another copy of prom-client than this library, whose class would not match.
  const registry = metrics as Partial<Registry> | null;
  if (typeof registry?.getSingleMetric !== 'function' || typeof registry.registerMetric !== 'function') {
    throw invalidOption('metrics', 'a prom-client Registry, or false for no metrics', metrics);
  }
  return metrics as Registry;
}
