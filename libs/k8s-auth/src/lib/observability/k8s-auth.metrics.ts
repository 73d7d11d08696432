import { Inject, Injectable } from '@nestjs/common';
import { Counter, Histogram, type Registry } from 'prom-client';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';

type ReviewOutcome = 'accepted' | 'refused' | 'error';
type AccessReviewOutcome = 'allowed' | 'denied' | 'error';
export type Decision = 'allowed' | 'unauthenticated' | 'forbidden' | 'bad_request' | 'unavailable';

/**
 * Review counters and latency through prom-client. Labels are fixed words: never a token, a caller
 * or a path, so cardinality stays bounded and nothing secret reaches a scrape.
 */
@Injectable()
export class K8sAuthMetrics {
  private readonly reviews?: Histogram<'outcome'>;
  private readonly cache?: Counter<'result'>;
  private readonly decisions?: Counter<'decision'>;
  private readonly accessReviews?: Histogram<'outcome'>;
  private readonly accessCache?: Counter<'result'>;
  private readonly jwksFetches?: Counter<'outcome'>;

  constructor(@Inject(RESOLVED_OPTIONS) options: Pick<ResolvedOptions, 'metrics'>) {
    const registry = options.metrics;
    if (registry === false) return;
    this.reviews = existing(
      registry,
      'k8s_auth_token_review_duration_seconds',
      (registers) =>
        new Histogram({
          name: 'k8s_auth_token_review_duration_seconds',
          help: 'TokenReview calls to the API server, by outcome',
          labelNames: ['outcome'],
          buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers,
        }),
    );
    this.cache = existing(
      registry,
      'k8s_auth_review_cache_lookups_total',
      (registers) =>
        new Counter({
          name: 'k8s_auth_review_cache_lookups_total',
          help: 'Review cache lookups, by result',
          labelNames: ['result'],
          registers,
        }),
    );
    this.decisions = existing(
      registry,
      'k8s_auth_guard_decisions_total',
      (registers) =>
        new Counter({
          name: 'k8s_auth_guard_decisions_total',
          help: 'Decisions of ServiceAccountGuard, by result',
          labelNames: ['decision'],
          registers,
        }),
    );
    this.accessReviews = existing(
      registry,
      'k8s_auth_subject_access_review_duration_seconds',
      (registers) =>
        new Histogram({
          name: 'k8s_auth_subject_access_review_duration_seconds',
          help: 'SubjectAccessReview calls to the API server, by outcome',
          labelNames: ['outcome'],
          buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers,
        }),
    );
    this.accessCache = existing(
      registry,
      'k8s_auth_access_cache_lookups_total',
      (registers) =>
        new Counter({
          name: 'k8s_auth_access_cache_lookups_total',
          help: 'SubjectAccessReview cache lookups, by result',
          labelNames: ['result'],
          registers,
        }),
    );
    this.jwksFetches = existing(
      registry,
      'k8s_auth_jwks_fetches_total',
      (registers) =>
        new Counter({
          name: 'k8s_auth_jwks_fetches_total',
          help: "Fetches of the API server's token signing keys for local verification, by outcome",
          labelNames: ['outcome'],
          registers,
        }),
    );
  }

  cacheLookup(hit: boolean): void {
    this.cache?.inc({ result: hit ? 'hit' : 'miss' });
  }

  reviewTimer(): (outcome: ReviewOutcome) => void {
    const end = this.reviews?.startTimer();
    return (outcome) => end?.({ outcome });
  }

  accessCacheLookup(hit: boolean): void {
    this.accessCache?.inc({ result: hit ? 'hit' : 'miss' });
  }

  accessReviewTimer(): (outcome: AccessReviewOutcome) => void {
    const end = this.accessReviews?.startTimer();
    return (outcome) => end?.({ outcome });
  }

  jwksFetch(outcome: 'success' | 'error'): void {
    this.jwksFetches?.inc({ outcome });
  }

  decision(decision: Decision): void {
    this.decisions?.inc({ decision });
  }
}

/** Several apps (or test modules) in one process share a registry: reuse a metric already there. */
function existing<T>(registry: Registry, name: string, create: (registers: Registry[]) => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create([registry]);
}
