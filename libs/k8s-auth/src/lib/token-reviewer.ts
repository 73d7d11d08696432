import { Inject, Injectable, Logger } from '@nestjs/common';
import { tokenFingerprint } from './bearer-token';
import { tokenExpiry } from './jwt-claims';
import { DEFAULTS } from './k8s-auth.constants';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import { MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { KubernetesApiClient, KubernetesApiError } from './kubernetes-api.client';
import { ReviewCache, type ReviewCacheKey } from './review-cache';
import { parseServiceAccountUsername } from './service-account-username';
import { SingleFlight } from './single-flight';

/** Who called, as the API server vouches for it. */
export interface CallerIdentity {
  /** `system:serviceaccount:<namespace>:<name>` */
  username: string;
  namespace: string;
  serviceAccount: string;
  uid?: string;
  groups: string[];
  /** The pod the token is bound to (projected tokens). */
  podName?: string;
  podUid?: string;
  nodeName?: string;
  /** The audiences the API server confirmed; empty for a review without an audience. */
  audiences: string[];
  /** `user.extra` of the TokenReview (pod name and uid, credential id, …), passed on to SubjectAccessReviews. */
  extra?: Record<string, string[]>;
}

/** Why a token was refused; safe to show to the caller. */
export type RefusalReason = 'invalid token' | 'wrong audience' | 'not a service account';

export type ReviewResult = { accepted: true; caller: CallerIdentity } | { accepted: false; reason: RefusalReason };

/** The API server could not give an answer: the request must fail closed with a 503. */
export class ReviewUnavailableError extends Error {
  override readonly name = 'ReviewUnavailableError';
}

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

const EXTRA = 'authentication.kubernetes.io/';

/**
 * Asks the API server (TokenReview) whether a token is genuine, for which audiences, and whose it is.
 * Answers are cached under an HMAC of the token, and concurrent identical questions share one call,
 * so the API server's load follows the number of distinct callers, not the traffic.
 */
@Injectable()
export class TokenReviewer {
  private readonly logger = new Logger('TokenReviewer');
  private readonly cache: ReviewCache<ReviewResult>;
  private readonly inFlight = new SingleFlight<string, ReviewResult>();
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;

  constructor(
    @Inject(MODULE_OPTIONS_TOKEN) options: K8sAuthModuleOptions,
    private readonly api: KubernetesApiClient,
    private readonly metrics: K8sAuthMetrics,
  ) {
    this.cache = new ReviewCache({ maxEntries: options.maxCacheEntries ?? DEFAULTS.maxCacheEntries });
    this.ttlMs = options.cacheTtlMs ?? DEFAULTS.cacheTtlMs;
    this.negativeTtlMs = options.negativeCacheTtlMs ?? DEFAULTS.negativeCacheTtlMs;
  }

  /**
   * Reviews `token` for `audiences`; an empty list reviews without an audience (the API server's own).
   * @throws ReviewUnavailableError when the API server cannot answer.
   */
  async review(token: string, audiences: readonly string[]): Promise<ReviewResult> {
    const key = this.cache.keyOf(token, audiences);
    const cached = this.cache.get(key);
    if (cached) {
      this.metrics.cacheLookup(true);
      return cached;
    }
    this.metrics.cacheLookup(false);
    // Concurrent requests with one token (and audiences) share one TokenReview.
    return this.inFlight.do(key, () => this.ask(token, audiences, key));
  }

  private async ask(token: string, audiences: readonly string[], key: ReviewCacheKey): Promise<ReviewResult> {
    const stopTimer = this.metrics.reviewTimer();
    let status: TokenReviewStatus;
    try {
      const review = await this.api.create<{ status?: TokenReviewStatus }>(
        '/apis/authentication.k8s.io/v1/tokenreviews',
        {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: audiences.length > 0 ? { token, audiences } : { token },
        },
      );
      status = review.status ?? {};
    } catch (err) {
      stopTimer('error');
      throw this.unavailable(err);
    }
    const result = interpret(status, audiences);
    stopTimer(result.accepted ? 'accepted' : 'refused');
    if (result.accepted) {
      // The API server has just verified the signature, so the token's own `exp` can be trusted.
      const expiresAt = tokenExpiry(token);
      this.cache.set(key, result, this.ttlMs, expiresAt);
    } else {
      this.cache.set(key, result, this.negativeTtlMs);
      this.logger.debug(`token ${tokenFingerprint(token)} refused: ${result.reason}`);
    }
    return result;
  }

  private unavailable(err: unknown): ReviewUnavailableError {
    if (err instanceof KubernetesApiError && err.failure === 'forbidden') {
      const message =
        `The API server refused this service's TokenReview (${err.message}). Its service account needs the ` +
        'ClusterRole system:auth-delegator: create a ClusterRoleBinding of system:auth-delegator to it.';
      this.logger.error(message);
      return new ReviewUnavailableError(message);
    }
    const message = `TokenReview failed: ${err instanceof Error ? err.message : String(err)}`;
    this.logger.warn(message);
    return new ReviewUnavailableError(message);
  }
}

/** Turns a TokenReview status into a decision. Exported for unit tests of the rules. */
export function interpret(status: TokenReviewStatus, audiences: readonly string[]): ReviewResult {
  if (status.authenticated !== true || !status.user?.username) {
    return { accepted: false, reason: /audience/i.test(status.error ?? '') ? 'wrong audience' : 'invalid token' };
  }
  const confirmed = status.audiences ?? [];
  // When audiences were asked for, the API server must confirm one of them; an empty list means
  // "valid for the API server", which is not us.
  if (audiences.length > 0 && !confirmed.some((a) => audiences.includes(a))) {
    return { accepted: false, reason: 'wrong audience' };
  }
  const account = parseServiceAccountUsername(status.user.username);
  if (!account) return { accepted: false, reason: 'not a service account' };
  const extra = status.user.extra ?? {};
  return {
    accepted: true,
    caller: {
      username: status.user.username,
      namespace: account.namespace,
      serviceAccount: account.name,
      uid: status.user.uid,
      groups: status.user.groups ?? [],
      podName: extra[`${EXTRA}pod-name`]?.[0],
      podUid: extra[`${EXTRA}pod-uid`]?.[0],
      nodeName: extra[`${EXTRA}node-name`]?.[0],
      audiences: confirmed,
      ...(Object.keys(extra).length > 0 ? { extra } : {}),
    },
  };
}
