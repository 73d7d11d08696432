import { Inject, Injectable, Logger } from '@nestjs/common';
import { AnswerCache } from '../authn/cached.authenticator';
import { hash } from 'node:crypto';
import { type AccessAttributes, describeAccess, type ResourceAttributes } from './access-check';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';
import { KubernetesApiClient, reviewUnavailable } from '../kube/kubernetes-api.client';
import { logSafe } from '../observability/log-safe';
import { type CallerIdentity, AuthenticationUnavailableError } from '../authn/authentication.types';

/** The API server's answer to one SubjectAccessReview. `reason` is for logs, never for the caller. */
export interface AccessDecision {
  allowed: boolean;
  reason?: string;
}

/** Who a SubjectAccessReview is about: the user as the TokenReview described it. */
export interface ReviewSubject {
  user: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** `spec` of a SubjectAccessReview: who, and what they want to do. */
export type SubjectAccessReviewSpec = ReviewSubject & AccessAttributes;

interface SubjectAccessReviewStatus {
  allowed?: boolean;
  denied?: boolean;
  reason?: string;
  evaluationError?: string;
}

const PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

/** The options the reviewer reads, resolved and checked at start-up. */
export type AccessReviewerOptions = Pick<
  ResolvedOptions,
  'accessCacheTtlMs' | 'accessDenyCacheTtlMs' | 'maxAccessReviewsInFlight' | 'maxCacheEntries'
>;

/**
 * Asks the API server (SubjectAccessReview) whether a caller may do something, as RBAC (or whatever
 * authorizer the cluster runs) decides. Decisions are cached under a hash of the whole review (user, uid, groups,
 * extra and attributes), allowed and denied ones for their own TTLs in caches of their own, so no number of denied
 * reviews can evict an allowed decision; failures are never cached. Concurrent identical reviews share one call.
 * At most `maxAccessReviewsInFlight` reviews wait at once, a bound apart from the TokenReviews' own, so a flood of
 * either kind cannot starve the other; a review beyond it fails at once (503).
 */
@Injectable()
export class AccessReviewer {
  private readonly logger = new Logger('AccessReviewer');
  private readonly decisions: AnswerCache<AccessDecision>;
  private readonly maxInFlight: number;
  private inFlight = 0;

  constructor(
    @Inject(RESOLVED_OPTIONS) options: AccessReviewerOptions,
    private readonly api: KubernetesApiClient,
    private readonly metrics: K8sAuthMetrics,
  ) {
    const allowed = { kind: 'good', ttlMs: Math.max(1, options.accessCacheTtlMs) } as const;
    const denied = { kind: 'bad', ttlMs: Math.max(1, options.accessDenyCacheTtlMs) } as const;
    this.maxInFlight = options.maxAccessReviewsInFlight;
    this.decisions = new AnswerCache(
      options.maxCacheEntries,
      (decision) => (decision.allowed ? allowed : denied),
      (hit) => metrics.accessCacheLookup(hit),
    );
  }

  /**
   * Whether `caller` may do what `attributes` describe.
   * @throws AuthenticationUnavailableError when the API server cannot answer, or the bound of reviews in flight is reached.
   */
  async review(caller: CallerIdentity, attributes: AccessAttributes): Promise<AccessDecision> {
    const spec = subjectAccessReviewSpec(caller, attributes);
    // Built in a fixed key order (extra sorted), so equal reviews give equal keys; it holds no secret.
    const key = hash('sha256', JSON.stringify(spec), 'base64');
    return this.decisions.answer(key, () => this.ask(spec));
  }

  private async ask(spec: SubjectAccessReviewSpec): Promise<AccessDecision> {
    if (this.inFlight >= this.maxInFlight) {
      throw new AuthenticationUnavailableError(`${this.inFlight} SubjectAccessReviews are in flight already`);
    }
    this.inFlight++;
    const stopTimer = this.metrics.accessReviewTimer();
    let status: SubjectAccessReviewStatus;
    try {
      const review = await this.api.create<{ status?: SubjectAccessReviewStatus }>(PATH, {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec,
      });
      status = review.status ?? {};
    } catch (err) {
      stopTimer('error');
      throw reviewUnavailable('SubjectAccessReview', err, this.logger);
    } finally {
      this.inFlight--;
    }
    const decision = interpretAccessReview(status);
    stopTimer(decision.allowed ? 'allowed' : 'denied');
    if (!decision.allowed && status.evaluationError) {
      // RBAC still answered (denied), but some of the cluster's RBAC objects could not be read: say so.
      this.logger.warn(
        `SubjectAccessReview for ${spec.user} (${describeAccess(spec)}): ${logSafe(status.evaluationError, 500)}`,
      );
    }
    return decision;
  }
}

/** The spec of the SubjectAccessReview for `caller` and `attributes`, in a fixed key order. */
export function subjectAccessReviewSpec(caller: CallerIdentity, attributes: AccessAttributes): SubjectAccessReviewSpec {
  const identity: ReviewSubject = {
    user: caller.username,
    groups: [...caller.groups],
  };
  if (caller.uid) identity.uid = caller.uid;
  if (caller.extra && Object.keys(caller.extra).length > 0) {
    identity.extra = Object.fromEntries(
      Object.keys(caller.extra)
        .sort()
        .map((k) => [k, [...(caller.extra?.[k] ?? [])]]),
    );
  }
  if ('nonResourceAttributes' in attributes) {
    const { path, verb } = attributes.nonResourceAttributes;
    return { ...identity, nonResourceAttributes: { path, verb } };
  }
  const { namespace, verb, group, resource, subresource, name } = attributes.resourceAttributes;
  // Only the fields that are set, always in the same order.
  const resourceAttributes: ResourceAttributes = {
    ...(namespace !== undefined ? { namespace } : {}),
    verb,
    ...(group !== undefined ? { group } : {}),
    resource,
    ...(subresource !== undefined ? { subresource } : {}),
    ...(name !== undefined ? { name } : {}),
  };
  return { ...identity, resourceAttributes };
}

/** Allowed only on an explicit `allowed: true`; anything else (denied, no opinion, odd answers) denies. */
export function interpretAccessReview(status: SubjectAccessReviewStatus): AccessDecision {
  const allowed = status.allowed === true && status.denied !== true;
  return status.reason ? { allowed, reason: status.reason } : { allowed };
}
