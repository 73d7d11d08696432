import { Logger } from '@nestjs/common';
import {
  accepted,
  refused,
  type AuthenticationResult,
  AuthenticationUnavailableError,
  type TokenAuthenticator,
} from './authentication.types';
import type { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import { type KubernetesApiClient, reviewUnavailable } from '../kube/kubernetes-api.client';
import { SERVICE_ACCOUNT_USERNAME, type ServiceAccountName } from '../kube/kubernetes-names';
import { readTokenTimes } from '../outgoing/token-times';

export interface TokenReviewOptions {
  /** TokenReviews this process waits for at once; a new token beyond them is answered 503 at once. */
  maxInFlight: number;
  /** A token whose own `exp` passed longer ago than this is refused without a review. */
  clockSkewMs: number;
}

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

const EXTRA = 'authentication.kubernetes.io/';

/**
 * Asks the API server (TokenReview) whether a token is genuine, for which audiences, and whose it is. Tokens that
 * cannot be genuine now (not a JWT, or expired by their own `exp`) are refused without asking; legacy tokens without
 * `exp` are asked about. At most `maxInFlight` reviews wait at once, so a flood of new tokens cannot queue
 * unbounded work on the API server.
 */
export class TokenReviewAuthenticator implements TokenAuthenticator {
  private readonly logger = new Logger('TokenReview');
  private inFlight = 0;

  constructor(
    private readonly api: KubernetesApiClient,
    private readonly metrics: K8sAuthMetrics,
    private readonly options: TokenReviewOptions,
  ) {}

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    let expiresAt: number | undefined;
    try {
      expiresAt = readTokenTimes(token).expiresAt?.getTime();
    } catch {
      return refused('invalid token'); // not a JWT: no signature can make it valid
    }
    // Expired by its own `exp` (read without verifying: a refusal needs no trust).
    if (expiresAt !== undefined && expiresAt + this.options.clockSkewMs < Date.now()) return refused('invalid token');
    if (this.inFlight >= this.options.maxInFlight) {
      throw new AuthenticationUnavailableError(`${this.inFlight} TokenReviews are in flight already`);
    }
    this.inFlight++;
    const stopTimer = this.metrics.reviewTimer();
    try {
      const review = await this.api.create<{ status?: TokenReviewStatus }>(
        '/apis/authentication.k8s.io/v1/tokenreviews',
        {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: audiences.length > 0 ? { token, audiences } : { token },
        },
      );
      // The API server has verified the token, so its `exp` now bounds how long the answer is reused.
      const result = interpretTokenReview(review.status ?? {}, audiences, expiresAt);
      stopTimer(result.accepted ? 'accepted' : 'refused');
      return result;
    } catch (err) {
      stopTimer('error');
      throw reviewUnavailable('TokenReview', err, this.logger);
    } finally {
      this.inFlight--;
    }
  }
}

/** Turns a TokenReview status into a decision. */
export function interpretTokenReview(
  status: TokenReviewStatus,
  audiences: readonly string[],
  expiresAt?: number,
): AuthenticationResult {
  if (status.authenticated !== true || !status.user?.username) {
    return refused(/audience/i.test(status.error ?? '') ? 'wrong audience' : 'invalid token');
  }
  const confirmed = status.audiences ?? [];
  // When audiences were asked for, the API server must confirm one of them; an empty list means
  // "valid for the API server", which is not this service.
  if (audiences.length > 0 && !confirmed.some((a) => audiences.includes(a))) return refused('wrong audience');
  const account = parseServiceAccountUsername(status.user.username);
  if (!account) return refused('not a service account');
  const extra = status.user.extra ?? {};
  return accepted(
    {
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
    expiresAt,
  );
}

/**
 * Reads the ServiceAccount from a TokenReview username, `system:serviceaccount:<namespace>:<name>`.
 * Anything else (nodes, users, groups, odd spellings) yields undefined: only ServiceAccounts are callers.
 */
export function parseServiceAccountUsername(username: string): ServiceAccountName | undefined {
  const groups = SERVICE_ACCOUNT_USERNAME.exec(username)?.groups;
  return groups ? { namespace: groups['namespace'], name: groups['name'] } : undefined;
}
