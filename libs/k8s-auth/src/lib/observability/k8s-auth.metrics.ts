import { Inject, Injectable } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';

type ReviewOutcome = 'accepted' | 'refused' | 'error';
type AccessReviewOutcome = 'allowed' | 'denied' | 'error';
export type Decision = 'allowed' | 'unauthenticated' | 'forbidden' | 'bad_request' | 'unavailable';

const LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Each metric of the library: name, help text, and its one label. */
const METRICS = {
  reviews: ['k8s_auth_token_review_duration_seconds', 'TokenReview calls to the API server, by outcome', 'outcome'],
  cache: ['k8s_auth_review_cache_lookups_total', 'Review cache lookups, by result', 'result'],
  decisions: ['k8s_auth_guard_decisions_total', 'Decisions of ServiceAccountGuard, by result', 'decision'],
  accessReviews: [
    'k8s_auth_subject_access_review_duration_seconds',
    'SubjectAccessReview calls to the API server, by outcome',
    'outcome',
  ],
  accessCache: ['k8s_auth_access_cache_lookups_total', 'SubjectAccessReview cache lookups, by result', 'result'],
  jwksFetches: [
    'k8s_auth_jwks_fetches_total',
    "Fetches of the API server's token signing keys for local verification, by outcome",
    'outcome',
  ],
} as const;

type Spec<L extends string> = readonly [name: string, help: string, label: L];

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
    // Several apps (or test modules) in one process share a registry: a metric already there is reused.
    const histogram = <L extends string>([name, help, label]: Spec<L>) =>
      (registry.getSingleMetric(name) as Histogram<L> | undefined) ??
      new Histogram({ name, help, labelNames: [label], buckets: LATENCY_BUCKETS, registers: [registry] });
    const counter = <L extends string>([name, help, label]: Spec<L>) =>
      (registry.getSingleMetric(name) as Counter<L> | undefined) ??
      new Counter({ name, help, labelNames: [label], registers: [registry] });
    this.reviews = histogram(METRICS.reviews);
    this.cache = counter(METRICS.cache);
    this.decisions = counter(METRICS.decisions);
    this.accessReviews = histogram(METRICS.accessReviews);
    this.accessCache = counter(METRICS.accessCache);
    this.jwksFetches = counter(METRICS.jwksFetches);
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
