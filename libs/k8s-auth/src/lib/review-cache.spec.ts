import crypto from 'node:crypto';
import { inspect } from 'node:util';
import { Clock, ReviewCache } from './review-cache';

class FakeClock implements Clock {
  constructor(public time = 1_700_000_000_000) {}
  now(): number {
    return this.time;
  }
  advance(ms: number): void {
    this.time += ms;
  }
}

// JWT-shaped strings built at run time, distinct per call.
function testToken(): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'RS256' })}.${encode({ jti: crypto.randomUUID() })}.${crypto.randomBytes(64).toString('base64url')}`;
}

const audiences = ['https://kubernetes.default.svc'];

describe('ReviewCache', () => {
  let clock: FakeClock;
  beforeEach(() => {
    clock = new FakeClock();
  });

  function newCache<V = string>(maxEntries = 100): ReviewCache<V> {
    return new ReviewCache<V>({ maxEntries, clock });
  }

  describe('get and set', () => {
    it('returns what was stored for the same token and audiences', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 10_000);
      expect(cache.get(cache.keyOf(token, audiences))).toBe('allowed');
      expect(cache.size).toBe(1);
    });

    it('misses for another token, other audiences or an empty cache', () => {
      const cache = newCache();
      const token = testToken();
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
      cache.set(cache.keyOf(token, audiences), 'allowed', 10_000);
      expect(cache.get(cache.keyOf(testToken(), audiences))).toBeUndefined();
      expect(cache.get(cache.keyOf(token, ['other-audience']))).toBeUndefined();
      expect(cache.get(cache.keyOf(token, []))).toBeUndefined();
      expect(cache.get(cache.keyOf(token, [...audiences, 'other-audience']))).toBeUndefined();
    });

    it('stores falsy values as hits', () => {
      const cache = newCache<boolean | number | null>();
      const [a, b, c] = [testToken(), testToken(), testToken()];
      cache.set(cache.keyOf(a, []), false, 10_000);
      cache.set(cache.keyOf(b, []), 0, 10_000);
      cache.set(cache.keyOf(c, []), null, 10_000);
      expect(cache.get(cache.keyOf(a, []))).toBe(false);
      expect(cache.get(cache.keyOf(b, []))).toBe(0);
      expect(cache.get(cache.keyOf(c, []))).toBeNull();
    });

    it('replaces the value stored for the same key', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'first', 10_000);
      cache.set(cache.keyOf(token, audiences), 'second', 10_000);
      expect(cache.get(cache.keyOf(token, audiences))).toBe('second');
      expect(cache.size).toBe(1);
    });

    it('treats audiences as a set: order does not matter', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, ['b', 'a', 'c']), 'allowed', 10_000);
      expect(cache.get(cache.keyOf(token, ['a', 'b', 'c']))).toBe('allowed');
      expect(cache.get(cache.keyOf(token, ['c', 'a', 'b']))).toBe('allowed');
    });

    it('does not reorder the caller’s audiences array', () => {
      const cache = newCache();
      const given = ['b', 'a'];
      cache.set(cache.keyOf(testToken(), given), 'allowed', 10_000);
      cache.get(cache.keyOf(testToken(), given));
      expect(given).toEqual(['b', 'a']);
    });

    it.each<[string, [string, string[]], [string, string[]]]>([
      ['a comma inside the token vs a second audience', ['a,b', []], ['a', ['b']]],
      ['a separator-like token vs audiences', ['a', ['b', 'c']], ['a', ['bc']]],
      ['audience split differently', ['t', ['ab', 'c']], ['t', ['a', 'bc']]],
      ['token and audience boundary', ['t1', ['x']], ['t', ['1x']]],
      ['length-prefix lookalike', ['t1:a', []], ['t', ['a']]],
      ['a comma inside an audience vs two audiences', ['t', ['a,b']], ['t', ['a', 'b']]],
      ['an empty audience vs none', ['t', ['']], ['t', []]],
      ['a repeated audience vs once', ['t', ['a', 'a']], ['t', ['a']]],
      ['NUL-joined vs split', ['t', ['a\u0000b']], ['t', ['a', 'b']]],
    ])('keeps distinct keys apart: %s', (_, [firstToken, firstAudiences], [secondToken, secondAudiences]) => {
      const cache = newCache();
      cache.set(cache.keyOf(firstToken, firstAudiences), 'first', 10_000);
      expect(cache.get(cache.keyOf(secondToken, secondAudiences))).toBeUndefined();
      cache.set(cache.keyOf(secondToken, secondAudiences), 'second', 10_000);
      expect(cache.get(cache.keyOf(firstToken, firstAudiences))).toBe('first');
      expect(cache.get(cache.keyOf(secondToken, secondAudiences))).toBe('second');
      expect(cache.size).toBe(2);
    });

    it('empties on clear', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 10_000);
      cache.set(cache.keyOf(testToken(), audiences), 'allowed', 10_000);
      cache.clear();
      expect(cache.size).toBe(0);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
    });
  });

  describe('expiry', () => {
    it('returns an entry until now + ttl and never after', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 10_000);
      clock.advance(9_999);
      expect(cache.get(cache.keyOf(token, audiences))).toBe('allowed');
      clock.advance(1);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
    });

    it('drops an expired entry when it is looked up', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 1_000);
      clock.advance(5_000);
      expect(cache.size).toBe(1);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
      expect(cache.size).toBe(0);
    });

    it('expires at notAfter when that comes before the ttl', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 60_000, new Date(clock.time + 2_000));
      clock.advance(1_999);
      expect(cache.get(cache.keyOf(token, audiences))).toBe('allowed');
      clock.advance(1);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
    });

    it('expires at the ttl when notAfter is later', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 2_000, new Date(clock.time + 60_000));
      clock.advance(1_999);
      expect(cache.get(cache.keyOf(token, audiences))).toBe('allowed');
      clock.advance(1);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
    });

    it.each([
      ['a zero ttl', 0, undefined],
      ['a negative ttl', -1, undefined],
      ['a NaN ttl', Number.NaN, undefined],
      ['notAfter in the past', 10_000, -1],
      ['notAfter now', 10_000, 0],
      ['an invalid notAfter', 10_000, Number.NaN],
    ])('does not store with %s', (_, ttlMs, notAfterOffset) => {
      const cache = newCache();
      const token = testToken();
      const notAfter = notAfterOffset === undefined ? undefined : new Date(clock.time + notAfterOffset);
      cache.set(cache.keyOf(token, audiences), 'allowed', ttlMs, notAfter);
      expect(cache.size).toBe(0);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
    });

    it('drops an older value when a newer one for the same key is not stored', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 10_000);
      cache.set(cache.keyOf(token, audiences), 'denied', 0);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
      expect(cache.size).toBe(0);
    });

    it('uses Date.now without a clock', () => {
      const cache = new ReviewCache<string>({ maxEntries: 10 });
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 60_000);
      expect(cache.get(cache.keyOf(token, audiences))).toBe('allowed');
      cache.set(cache.keyOf(token, audiences), 'allowed', 60_000, new Date(Date.now() - 1));
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
    });
  });

  describe('least-recently-used bound', () => {
    it('evicts the oldest entry beyond maxEntries', () => {
      const cache = newCache(3);
      const tokens = [testToken(), testToken(), testToken(), testToken()];
      tokens.forEach((token, index) => cache.set(cache.keyOf(token, audiences), `value-${index}`, 10_000));
      expect(cache.size).toBe(3);
      expect(cache.get(cache.keyOf(tokens[0], audiences))).toBeUndefined();
      expect(cache.get(cache.keyOf(tokens[1], audiences))).toBe('value-1');
      expect(cache.get(cache.keyOf(tokens[2], audiences))).toBe('value-2');
      expect(cache.get(cache.keyOf(tokens[3], audiences))).toBe('value-3');
    });

    it('counts a get as a use', () => {
      const cache = newCache(3);
      const [a, b, c, d] = [testToken(), testToken(), testToken(), testToken()];
      cache.set(cache.keyOf(a, audiences), 'a', 10_000);
      cache.set(cache.keyOf(b, audiences), 'b', 10_000);
      cache.set(cache.keyOf(c, audiences), 'c', 10_000);
      expect(cache.get(cache.keyOf(a, audiences))).toBe('a');
      cache.set(cache.keyOf(d, audiences), 'd', 10_000);
      expect(cache.get(cache.keyOf(b, audiences))).toBeUndefined();
      expect(cache.get(cache.keyOf(a, audiences))).toBe('a');
      expect(cache.get(cache.keyOf(c, audiences))).toBe('c');
      expect(cache.get(cache.keyOf(d, audiences))).toBe('d');
    });

    it('keeps the order right when the most recent entry is read again, or expires and comes back', () => {
      const cache = newCache(3);
      const [a, b, c, d, e] = [testToken(), testToken(), testToken(), testToken(), testToken()];
      cache.set(cache.keyOf(a, audiences), 'a', 10_000);
      cache.set(cache.keyOf(b, audiences), 'b', 10_000);
      cache.set(cache.keyOf(c, audiences), 'c', 1_000);
      expect(cache.get(cache.keyOf(c, audiences))).toBe('c'); // already the most recent
      expect(cache.get(cache.keyOf(a, audiences))).toBe('a'); // order now b, c, a
      expect(cache.get(cache.keyOf(a, audiences))).toBe('a');
      clock.advance(1_000);
      expect(cache.get(cache.keyOf(c, audiences))).toBeUndefined(); // expired and dropped: b, a
      cache.set(cache.keyOf(d, audiences), 'd', 10_000); // b, a, d
      cache.set(cache.keyOf(e, audiences), 'e', 10_000); // b, a, d, e: b goes
      expect(cache.get(cache.keyOf(b, audiences))).toBeUndefined();
      expect([a, d, e].map((t) => cache.get(cache.keyOf(t, audiences)))).toEqual(['a', 'd', 'e']);
      cache.clear();
      cache.set(cache.keyOf(b, audiences), 'b', 10_000);
      expect(cache.get(cache.keyOf(b, audiences))).toBe('b');
    });

    it('counts a set of an existing key as a use, without growing', () => {
      const cache = newCache(2);
      const [a, b, c] = [testToken(), testToken(), testToken()];
      cache.set(cache.keyOf(a, audiences), 'a', 10_000);
      cache.set(cache.keyOf(b, audiences), 'b', 10_000);
      cache.set(cache.keyOf(a, audiences), 'a2', 10_000);
      expect(cache.size).toBe(2);
      cache.set(cache.keyOf(c, audiences), 'c', 10_000);
      expect(cache.get(cache.keyOf(b, audiences))).toBeUndefined();
      expect(cache.get(cache.keyOf(a, audiences))).toBe('a2');
      expect(cache.get(cache.keyOf(c, audiences))).toBe('c');
    });

    it('never holds more than maxEntries', () => {
      const cache = newCache(50);
      for (let i = 0; i < 500; i++) {
        cache.set(cache.keyOf(testToken(), audiences), `value-${i}`, 10_000);
        expect(cache.size).toBeLessThanOrEqual(50);
      }
      expect(cache.size).toBe(50);
    });

    it('stores nothing with maxEntries 0', () => {
      const cache = newCache(0);
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 10_000);
      expect(cache.size).toBe(0);
      expect(cache.get(cache.keyOf(token, audiences))).toBeUndefined();
    });

    it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects maxEntries %p', (maxEntries) => {
      expect(() => new ReviewCache({ maxEntries })).toThrow(RangeError);
    });
  });

  describe('admitOnRepeat', () => {
    const admitting = (maxEntries = 100) => new ReviewCache<string>({ maxEntries, clock, admitOnRepeat: true });

    it('stores a value the second time its key is set, not the first', () => {
      const cache = admitting();
      const key = cache.keyOf(testToken(), audiences);
      cache.set(key, 'first', 10_000);
      expect(cache.get(key)).toBeUndefined();
      cache.set(key, 'second', 10_000);
      expect(cache.get(key)).toBe('second');
      expect(cache.size).toBe(1);
    });

    it('keeps no entry for keys set once, however many', () => {
      const cache = admitting(1_000);
      for (let i = 0; i < 5_000; i++) cache.set(cache.keyOf(testToken(), audiences), 'once', 10_000);
      expect(cache.size).toBe(0);
    });

    it('still admits a repeated key among others set once', () => {
      const cache = admitting(16_384);
      const key = cache.keyOf(testToken(), audiences);
      cache.set(key, 'value', 10_000);
      // A few keys set once in between: each takes the slot of its own first characters, almost surely not this one's.
      for (let i = 0; i < 10; i++) cache.set(cache.keyOf(testToken(), audiences), 'once', 10_000);
      cache.set(key, 'value', 10_000);
      expect(cache.get(key)).toBe('value');
    });

    it('does not count a set that stores nothing (expired) as the first, and forgets on clear()', () => {
      const cache = admitting();
      const key = cache.keyOf(testToken(), audiences);
      cache.set(key, 'expired', 0);
      cache.set(key, 'value', 10_000);
      expect(cache.get(key)).toBeUndefined();
      cache.clear();
      cache.set(key, 'value', 10_000);
      expect(cache.get(key)).toBeUndefined();
      cache.set(key, 'value', 10_000);
      expect(cache.get(key)).toBe('value');
    });
  });

  describe('keys', () => {
    it('never holds the raw token', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(cache.keyOf(token, audiences), 'allowed', 10_000);
      const dump = inspect(cache, { depth: Infinity, showHidden: true, maxStringLength: Infinity });
      for (const segment of token.split('.')) expect(dump).not.toContain(segment);
    });

    it('uses a per-instance key: one token maps to different keys in different caches', () => {
      const token = testToken();
      expect(newCache().keyOf(token, audiences)).not.toBe(newCache().keyOf(token, audiences));
      expect(newCache().keyOf(token, audiences)).toHaveLength(44); // base64 of SHA-256, whatever the token's size
    });

    it('computes one hash per key, and none in get and set', () => {
      const cache = newCache();
      const token = testToken();
      const digest = jest.spyOn(crypto, 'hash');
      try {
        const key = cache.keyOf(token, ['b', 'a']);
        cache.set(key, 'allowed', 10_000);
        expect(cache.get(key)).toBe('allowed');
        expect(cache.get(cache.keyOf(token, ['a', 'b']))).toBe('allowed');
        expect(cache.get(cache.keyOf(testToken(), ['a', 'b']))).toBeUndefined();
        expect(digest).toHaveBeenCalledTimes(3);
      } finally {
        digest.mockRestore();
      }
    });
  });
});
