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

/**
 * Caches TokenReview results per (token, audiences), so a busy caller costs one API-server round trip per TTL.
 *
 * Keys are HMACs under a per-instance random key: the cache never holds a usable credential, and its keys mean
 * nothing outside this process. Bounded LRU on a Map's insertion order (re-inserting on read moves an entry last).
 * `size` counts expired entries that have not been looked up since; they are evicted first as they age out of use.
 */
export class ReviewCache<V> {
  private readonly entries = new Map<string, CacheEntry<V>>();
  private readonly hmac = new Sha256Hmac();
  private readonly maxEntries: number;
  private readonly clock: Clock;

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

  get(token: string, audiences: readonly string[]): V | undefined {
    if (this.entries.size === 0) return undefined;
    const key = this.keyFor(token, audiences);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (this.clock.now() >= entry.expiresAt) return undefined;
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Stores `value` until the earlier of now + `ttlMs` and `notAfter` (e.g. the token's own expiry). */
  set(token: string, audiences: readonly string[], value: V, ttlMs: number, notAfter?: Date): void {
    const key = this.keyFor(token, audiences);
    // Whatever was cached for this key is superseded, even if the new value is not worth keeping.
    this.entries.delete(key);
    const now = this.clock.now();
    let expiresAt = now + ttlMs;
    if (notAfter !== undefined) expiresAt = Math.min(expiresAt, notAfter.getTime());
    // `!(a > b)` also refuses NaN from a bad ttl or an invalid Date.
    if (!(ttlMs > 0) || !(expiresAt > now) || this.maxEntries === 0) return;
    this.entries.set(key, { value, expiresAt });
    if (this.entries.size > this.maxEntries) {
      // The first key in insertion order is the least recently used.
      const leastRecent = this.entries.keys().next();
      if (!leastRecent.done) this.entries.delete(leastRecent.value);
    }
  }

  clear(): void {
    this.entries.clear();
  }

  // Each part is prefixed with its length, so no two (token, audiences) pairs encode alike ("a,b" + [] vs "a" + ["b"]).
  // Audiences are sorted because TokenReview treats them as a set. One string, one HMAC: this runs on every request.
  private keyFor(token: string, audiences: readonly string[]): string {
    let encoded = `${token.length}:${token}`;
    const sorted = audiences.length > 1 ? [...audiences].sort() : audiences;
    for (const audience of sorted) encoded += `${audience.length}:${audience}`;
    return this.hmac.digest(encoded);
  }
}

/**
 * HMAC-SHA256 (RFC 2104) under a random per-instance key, computed with two one-shot `crypto.hash` calls: the same
 * result as `createHmac`, without building a Hmac stream object for every request (which cost more than the hashing
 * itself in the guard's CPU profile). The 64-byte key is drawn with its high bits clear, so that the padded keys are
 * ASCII and can prefix the UTF-8 message as strings. Exported for its spec only.
 */
export class Sha256Hmac {
  private readonly innerPad: string;
  private readonly outerPad: Buffer;

  constructor(readonly key: Buffer = Buffer.from(randomBytes(64).map((b) => b & 0x7f))) {
    if (key.length !== 64 || key.some((b) => b > 0x7f)) throw new RangeError('the key must be 64 bytes below 0x80');
    this.innerPad = Buffer.from(key.map((b) => b ^ 0x36)).toString('latin1');
    this.outerPad = Buffer.from(key.map((b) => b ^ 0x5c));
  }

  /** HMAC-SHA256 of `message` (UTF-8), base64. */
  digest(message: string): string {
    const inner = hash('sha256', this.innerPad + message, 'buffer');
    return hash('sha256', Buffer.concat([this.outerPad, inner], 96), 'base64');
  }
}
