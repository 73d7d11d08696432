import { hash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { AuthenticationResult, TokenAuthenticator } from './authentication.types';
import type { K8sAuthMetrics } from '../observability/k8s-auth.metrics';

/** Checked at start-up, as the options they come from (`resolveOptions`). */
export interface AnswerCacheOptions {
  /** Bound of each cache (acceptances, refusals); 0 turns caching off (concurrent questions still share one answer). */
  maxEntries: number;
  /** How long an acceptance is reused; never past the token's own `exp`. */
  ttlMs: number;
  /** How long a refusal is reused. */
  refusalTtlMs: number;
}

/** Where an answer is kept, and for how long (0: not kept). */
export interface Keeping {
  kind: 'good' | 'bad';
  ttlMs: number;
}

/**
 * Answers by key, kept apart by kind (accepted and refused, allowed and denied) in caches of their own, so that no
 * number of answers of one kind can evict one of the other; each for the time `keeping` gives it. Errors are never
 * kept. A question about a key being answered already shares that answer. lru-cache's `fetch()` would coalesce too,
 * but builds an AbortController per new key (its cost is in bench/README.md) and keeps every answer in one cache.
 */
export class AnswerCache<V> {
  private readonly kept: Record<Keeping['kind'], LRUCache<string, V & object>> | undefined;
  private readonly pending = new Map<string, Promise<V>>();

  /** `maxEntries`: bound of each cache; 0 keeps nothing (questions under way are still shared). */
  constructor(
    maxEntries: number,
    private readonly keeping: (answer: V) => Keeping,
    private readonly onLookup: (hit: boolean) => void,
  ) {
    if (maxEntries > 0) {
      this.kept = { good: new LRUCache({ max: maxEntries }), bad: new LRUCache({ max: maxEntries }) };
    }
  }

  /** The answer kept for `key`, or the one `ask` gives (shared with every question about `key` meanwhile). */
  answer(key: string, ask: () => Promise<V>): Promise<V> | V {
    if (this.kept) {
      const known = this.kept.good.get(key) ?? this.kept.bad.get(key);
      this.onLookup(known !== undefined);
      if (known !== undefined) return known;
    }
    let answer = this.pending.get(key);
    if (!answer) {
      answer = ask().then(
        (value) => {
          this.pending.delete(key);
          this.keep(key, value);
          return value;
        },
        (err: unknown) => {
          this.pending.delete(key);
          throw err;
        },
      );
      this.pending.set(key, answer);
    }
    return answer;
  }

  private keep(key: string, value: V): void {
    const { kind, ttlMs } = this.keeping(value);
    // lru-cache reads a TTL of 0 as "no TTL".
    if (ttlMs >= 1) this.kept?.[kind].set(key, value as V & object, { ttl: ttlMs });
  }
}

/**
 * Caches another authenticator's answers per (token, audiences), as Kubernetes' cachedTokenAuthenticator does:
 * acceptances for `ttlMs` (capped at the token's `exp`), refusals for `refusalTtlMs` in a cache of their own, so no
 * number of refused tokens can evict an accepted one; errors are never cached. Concurrent questions about one token
 * share one answer.
 *
 * Keys are SHA-256 digests of the token under a random per-instance salt: the cache never holds a usable credential.
 */
export class CachedAuthenticator implements TokenAuthenticator {
  private readonly salt = randomBytes(32).toString('base64');
  private readonly answers: AnswerCache<AuthenticationResult>;

  constructor(
    private readonly inner: TokenAuthenticator,
    options: AnswerCacheOptions,
    metrics: K8sAuthMetrics,
  ) {
    const refusalTtlMs = Math.max(1, options.refusalTtlMs);
    this.answers = new AnswerCache(
      options.maxEntries,
      (result) =>
        result.accepted
          ? { kind: 'good', ttlMs: Math.min(options.ttlMs, (result.expiresAt ?? Infinity) - Date.now()) }
          : { kind: 'bad', ttlMs: refusalTtlMs },
      (hit) => metrics.cacheLookup(hit),
    );
  }

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    return this.answers.answer(this.keyOf(token, audiences), () => this.inner.authenticate(token, audiences));
  }

  /**
   * Each part is prefixed with its length, so no two pairs encode alike ("a,b" + [] vs "a" + ["b"]); audiences are
   * sorted because TokenReview treats them as a set.
   */
  private keyOf(token: string, audiences: readonly string[]): string {
    let encoded = `${this.salt}${token.length}:${token}`;
    for (const audience of [...audiences].sort()) encoded += `${audience.length}:${audience}`;
    return hash('sha256', encoded, 'base64');
  }
}
