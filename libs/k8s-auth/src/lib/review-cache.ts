import { hash, randomBytes } from 'node:crypto';

/** Milliseconds since the epoch; injectable so tests control expiry. */
export interface Clock {
  now(): number;
}

export interface ReviewCacheOptions {
  /** Upper bound on stored entries; 0 disables the cache. */
  maxEntries: number;
  clock?: Clock;
}

interface CacheEntry<V> {
  value: V;
  expiresAt: number;
}

const systemClock: Clock = { now: () => Date.now() };

/** A cache key made by {@link ReviewCache.keyOf}: never the token itself. */
export type ReviewCacheKey = string & { readonly __reviewCacheKey: never };

/**
 * Caches TokenReview results per (token, audiences), so a busy caller costs one API-server round trip per TTL.
 *
 * Keys are SHA-256 digests of the token under a per-instance random salt: the cache never holds a usable credential,
 * and its keys mean nothing outside this process. (One salted hash, not an HMAC: a key only has to be unique per
 * token, which SHA-256's collision resistance gives, and it is computed on every request: one hash call costs a
 * third of HMAC's two plus their glue in the guard's profile.) Bounded LRU on a Map's insertion order (re-inserting on read moves an entry last).
 * `size` counts expired entries that have not been looked up since; they are evicted first as they age out of use.
 */
export class ReviewCache<V> {
  private readonly entries = new Map<ReviewCacheKey, CacheEntry<V>>();
  // A per-instance random prefix: the same token gives unrelated keys in another cache or another process.
  private readonly salt = randomBytes(32).toString('base64');
  private readonly maxEntries: number;
  private readonly clock: Clock;
  /** The key inserted last, i.e. the last entry in the map's order (if it is still there). */
  private newest: ReviewCacheKey | undefined;

  constructor(options: ReviewCacheOptions) {
    if (!Number.isSafeInteger(options.maxEntries) || options.maxEntries < 0) {
      throw new RangeError(`maxEntries must be a non-negative integer, got ${options.maxEntries}`);
    }
    this.maxEntries = options.maxEntries;
    this.clock = options.clock ?? systemClock;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: ReviewCacheKey): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.clock.now() >= entry.expiresAt) {
      this.entries.delete(key);
      return undefined;
    }
    // Moves the entry last (most recently used), unless it is last already: a busy caller's token usually is.
    if (key !== this.newest) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      this.newest = key;
    }
    return entry.value;
  }

  /** Stores `value` until the earlier of now + `ttlMs` and `notAfter` (e.g. the token's own expiry). */
  set(key: ReviewCacheKey, value: V, ttlMs: number, notAfter?: Date): void {
    // Whatever was cached for this key is superseded, even if the new value is not worth keeping.
    this.entries.delete(key);
    const now = this.clock.now();
    let expiresAt = now + ttlMs;
    if (notAfter !== undefined) expiresAt = Math.min(expiresAt, notAfter.getTime());
    // `!(a > b)` also refuses NaN from a bad ttl or an invalid Date.
    if (!(ttlMs > 0) || !(expiresAt > now) || this.maxEntries === 0) return;
    this.entries.set(key, { value, expiresAt });
    this.newest = key;
    if (this.entries.size > this.maxEntries) {
      // The first key in insertion order is the least recently used.
      const leastRecent = this.entries.keys().next();
      if (!leastRecent.done) this.entries.delete(leastRecent.value);
    }
  }

  clear(): void {
    this.entries.clear();
    this.newest = undefined;
  }

  /**
   * The key of (`token`, `audiences`), for get() and then set(): computed once per request, since it is a hash of the
   * token. Each part is prefixed with its length, so no two pairs encode alike ("a,b" + [] vs "a" + ["b"]); audiences
   * are sorted because TokenReview treats them as a set.
   */
  keyOf(token: string, audiences: readonly string[]): ReviewCacheKey {
    let encoded = `${this.salt}${token.length}:${token}`;
    const sorted = audiences.length > 1 ? [...audiences].sort() : audiences;
    for (const audience of sorted) encoded += `${audience.length}:${audience}`;
    return hash('sha256', encoded, 'base64') as ReviewCacheKey;
  }
}
