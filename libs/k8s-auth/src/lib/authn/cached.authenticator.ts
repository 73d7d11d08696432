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

/**
 * The calls under way, by key: a caller asking for a key already being answered gets that answer, and `keep` sees
 * each answer once. lru-cache's `fetch()` would coalesce too, but builds an AbortController per new key (the cost is in
 * bench/README.md), and keeps every answer in the one cache it fetches for.
 */
export class SharedCalls<V> {
  private readonly pending = new Map<string, Promise<V>>();

  run(key: string, call: () => Promise<V>, keep: (value: V) => void): Promise<V> {
    let answer = this.pending.get(key);
    if (!answer) {
      answer = call().then(
        (value) => {
          this.pending.delete(key);
          keep(value);
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
  private readonly acceptances: LRUCache<string, AuthenticationResult> | undefined;
  private readonly refusals: LRUCache<string, AuthenticationResult> | undefined;
  private readonly pending = new SharedCalls<AuthenticationResult>();

  constructor(
    private readonly inner: TokenAuthenticator,
    private readonly options: AnswerCacheOptions,
    private readonly metrics: K8sAuthMetrics,
  ) {
    if (options.maxEntries === 0) return;
    this.acceptances = new LRUCache({ max: options.maxEntries });
    this.refusals = new LRUCache({ max: options.maxEntries });
  }

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    const key = this.keyOf(token, audiences);
    if (this.acceptances && this.refusals) {
      const known = this.acceptances.get(key) ?? this.refusals.get(key);
      this.metrics.cacheLookup(known !== undefined);
      if (known) return known;
    }

    return this.pending.run(
      key,
      () => this.inner.authenticate(token, audiences),
      (result) => this.keep(key, result),
    );
  }

  private keep(key: string, result: AuthenticationResult): void {
    if (!result.accepted) {
      this.refusals?.set(key, result, { ttl: Math.max(1, this.options.refusalTtlMs) });
      return;
    }
    const untilExpiry = (result.expiresAt ?? Infinity) - Date.now();
    const ttl = Math.min(this.options.ttlMs, untilExpiry);
    if (ttl >= 1) this.acceptances?.set(key, result, { ttl });
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
