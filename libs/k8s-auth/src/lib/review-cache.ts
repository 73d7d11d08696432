import { hash, randomBytes } from 'node:crypto';

/** Milliseconds since the epoch; injectable so tests control expiry. */
export interface Clock {
  now(): number;
}

export interface ReviewCacheOptions {
  /** Upper bound on stored entries; 0 disables the cache. */
  maxEntries: number;
  /**
   * Store a value only the second time set() is called for its key, so that keys seen once cost no entry. For answers
   * that are cheap to compute again and often asked once (local verification of a flood of new tokens): each entry
   * kept lives long enough to be promoted out of V8's young generation and then dies there, which cost the event
   * loop more than the lookup saves. Which keys were seen once is remembered in a fixed table of
   * min(maxEntries, 16 384) slots (a newer key takes an older one's slot). @default false
   */
  admitOnRepeat?: boolean;
  clock?: Clock;
}

interface CacheEntry<V> {
  value: V;
  expiresAt: number;
}

const systemClock: Clock = { now: () => Date.now() };

const SEEN_ONCE_SLOTS = 16_384;

/** A cache key made by {@link ReviewCache.keyOf}: never the token itself. */
export type ReviewCacheKey = string & { readonly __reviewCacheKey: never };

/**
 * Caches answers per (token, audiences): TokenReviews, so a busy caller costs one API-server round trip per TTL, and
 * likewise local verifications and SubjectAccessReviews.
 *
 * Keys are SHA-256 digests of the token under a per-instance random salt: the cache never holds a usable credential,
 * and its keys mean nothing outside this process. (One salted hash, not an HMAC: a key only has to be unique per
 * token, which SHA-256's collision resistance gives, and it is computed on every request: one hash call costs a
 * third of HMAC's two plus their glue in the guard's profile.) Bounded LRU on a Map's insertion order (re-inserting
 * on read moves an entry last).
 * `size` counts expired entries that have not been looked up since; they are evicted first as they age out of use.
 */
export class ReviewCache<V> {
  private readonly entries = new Map<ReviewCacheKey, CacheEntry<V>>();
  // A per-instance random prefix: the same token gives unrelated keys in another cache or another process.
  private readonly salt = randomBytes(32).toString('base64');
  private readonly maxEntries: number;
  private readonly clock: Clock;
  /** With `admitOnRepeat`: keys set once and not stored, each in the slot its first characters pick. */
  private readonly seenOnce: Array<ReviewCacheKey | undefined> | undefined;
  /** The key inserted last, i.e. the last entry in the map's order (if it is still there). */
  private newest: ReviewCacheKey | undefined;

  constructor(options: ReviewCacheOptions) {
    if (!Number.isSafeInteger(options.maxEntries) || options.maxEntries < 0) {
      throw new RangeError(`maxEntries must be a non-negative integer, got ${options.maxEntries}`);
    }
    this.maxEntries = options.maxEntries;
    this.seenOnce = options.admitOnRepeat ? new Array(Math.min(options.maxEntries, SEEN_ONCE_SLOTS)) : undefined;
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
    if (this.seenOnce && !this.seenBefore(key, this.seenOnce)) return;
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
    this.seenOnce?.fill(undefined);
    this.newest = undefined;
  }

  /** Whether `key` was set once before (and forgets it); if not, remembers it in its slot. */
  private seenBefore(key: ReviewCacheKey, seen: Array<ReviewCacheKey | undefined>): boolean {
    // The key is base64 of a salted SHA-256: its first three characters carry 18 evenly spread bits.
    const slot = ((sextet(key, 0) << 12) | (sextet(key, 1) << 6) | sextet(key, 2)) % seen.length;
    if (seen[slot] === key) {
      seen[slot] = undefined;
      return true;
    }
    seen[slot] = key;
    return false;
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

/** The 6-bit value of the base64 character at `index` of `text`. */
function sextet(text: string, index: number): number {
  const c = text.charCodeAt(index);
  if (c >= 97) return c - 71; // a-z: 26-51
  if (c >= 65) return c - 65; // A-Z: 0-25
  if (c >= 48) return c + 4; // 0-9: 52-61
  return c === 43 ? 62 : 63; // + and /
}
