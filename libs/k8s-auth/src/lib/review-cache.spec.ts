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
      cache.set(token, audiences, 'allowed', 10_000);
      expect(cache.get(token, audiences)).toBe('allowed');
      expect(cache.size).toBe(1);
    });

    it('misses for another token, other audiences or an empty cache', () => {
      const cache = newCache();
      const token = testToken();
      expect(cache.get(token, audiences)).toBeUndefined();
      cache.set(token, audiences, 'allowed', 10_000);
      expect(cache.get(testToken(), audiences)).toBeUndefined();
      expect(cache.get(token, ['other-audience'])).toBeUndefined();
      expect(cache.get(token, [])).toBeUndefined();
      expect(cache.get(token, [...audiences, 'other-audience'])).toBeUndefined();
    });

    it('stores falsy values as hits', () => {
      const cache = newCache<boolean | number | null>();
      const [a, b, c] = [testToken(), testToken(), testToken()];
      cache.set(a, [], false, 10_000);
      cache.set(b, [], 0, 10_000);
      cache.set(c, [], null, 10_000);
      expect(cache.get(a, [])).toBe(false);
      expect(cache.get(b, [])).toBe(0);
      expect(cache.get(c, [])).toBeNull();
    });

    it('replaces the value stored for the same key', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'first', 10_000);
      cache.set(token, audiences, 'second', 10_000);
      expect(cache.get(token, audiences)).toBe('second');
      expect(cache.size).toBe(1);
    });

    it('treats audiences as a set: order does not matter', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, ['b', 'a', 'c'], 'allowed', 10_000);
      expect(cache.get(token, ['a', 'b', 'c'])).toBe('allowed');
      expect(cache.get(token, ['c', 'a', 'b'])).toBe('allowed');
    });

    it('does not reorder the caller’s audiences array', () => {
      const cache = newCache();
      const given = ['b', 'a'];
      cache.set(testToken(), given, 'allowed', 10_000);
      cache.get(testToken(), given);
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
      cache.set(firstToken, firstAudiences, 'first', 10_000);
      expect(cache.get(secondToken, secondAudiences)).toBeUndefined();
      cache.set(secondToken, secondAudiences, 'second', 10_000);
      expect(cache.get(firstToken, firstAudiences)).toBe('first');
      expect(cache.get(secondToken, secondAudiences)).toBe('second');
      expect(cache.size).toBe(2);
    });

    it('empties on clear', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'allowed', 10_000);
      cache.set(testToken(), audiences, 'allowed', 10_000);
      cache.clear();
      expect(cache.size).toBe(0);
      expect(cache.get(token, audiences)).toBeUndefined();
    });
  });

  describe('expiry', () => {
    it('returns an entry until now + ttl and never after', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'allowed', 10_000);
      clock.advance(9_999);
      expect(cache.get(token, audiences)).toBe('allowed');
      clock.advance(1);
      expect(cache.get(token, audiences)).toBeUndefined();
    });

    it('drops an expired entry when it is looked up', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'allowed', 1_000);
      clock.advance(5_000);
      expect(cache.size).toBe(1);
      expect(cache.get(token, audiences)).toBeUndefined();
      expect(cache.size).toBe(0);
    });

    it('expires at notAfter when that comes before the ttl', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'allowed', 60_000, new Date(clock.time + 2_000));
      clock.advance(1_999);
      expect(cache.get(token, audiences)).toBe('allowed');
      clock.advance(1);
      expect(cache.get(token, audiences)).toBeUndefined();
    });

    it('expires at the ttl when notAfter is later', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'allowed', 2_000, new Date(clock.time + 60_000));
      clock.advance(1_999);
      expect(cache.get(token, audiences)).toBe('allowed');
      clock.advance(1);
      expect(cache.get(token, audiences)).toBeUndefined();
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
      cache.set(token, audiences, 'allowed', ttlMs, notAfter);
      expect(cache.size).toBe(0);
      expect(cache.get(token, audiences)).toBeUndefined();
    });

    it('drops an older value when a newer one for the same key is not stored', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'allowed', 10_000);
      cache.set(token, audiences, 'denied', 0);
      expect(cache.get(token, audiences)).toBeUndefined();
      expect(cache.size).toBe(0);
    });

    it('uses Date.now without a clock', () => {
      const cache = new ReviewCache<string>({ maxEntries: 10 });
      const token = testToken();
      cache.set(token, audiences, 'allowed', 60_000);
      expect(cache.get(token, audiences)).toBe('allowed');
      cache.set(token, audiences, 'allowed', 60_000, new Date(Date.now() - 1));
      expect(cache.get(token, audiences)).toBeUndefined();
    });
  });

  describe('least-recently-used bound', () => {
    it('evicts the oldest entry beyond maxEntries', () => {
      const cache = newCache(3);
      const tokens = [testToken(), testToken(), testToken(), testToken()];
      tokens.forEach((token, index) => cache.set(token, audiences, `value-${index}`, 10_000));
      expect(cache.size).toBe(3);
      expect(cache.get(tokens[0], audiences)).toBeUndefined();
      expect(cache.get(tokens[1], audiences)).toBe('value-1');
      expect(cache.get(tokens[2], audiences)).toBe('value-2');
      expect(cache.get(tokens[3], audiences)).toBe('value-3');
    });

    it('counts a get as a use', () => {
      const cache = newCache(3);
      const [a, b, c, d] = [testToken(), testToken(), testToken(), testToken()];
      cache.set(a, audiences, 'a', 10_000);
      cache.set(b, audiences, 'b', 10_000);
      cache.set(c, audiences, 'c', 10_000);
      expect(cache.get(a, audiences)).toBe('a');
      cache.set(d, audiences, 'd', 10_000);
      expect(cache.get(b, audiences)).toBeUndefined();
      expect(cache.get(a, audiences)).toBe('a');
      expect(cache.get(c, audiences)).toBe('c');
      expect(cache.get(d, audiences)).toBe('d');
    });

    it('keeps the order right when the most recent entry is read again, or expires and comes back', () => {
      const cache = newCache(3);
      const [a, b, c, d, e] = [testToken(), testToken(), testToken(), testToken(), testToken()];
      cache.set(a, audiences, 'a', 10_000);
      cache.set(b, audiences, 'b', 10_000);
      cache.set(c, audiences, 'c', 1_000);
      expect(cache.get(c, audiences)).toBe('c'); // already the most recent
      expect(cache.get(a, audiences)).toBe('a'); // order now b, c, a
      expect(cache.get(a, audiences)).toBe('a');
      clock.advance(1_000);
      expect(cache.get(c, audiences)).toBeUndefined(); // expired and dropped: b, a
      cache.set(d, audiences, 'd', 10_000); // b, a, d
      cache.set(e, audiences, 'e', 10_000); // b, a, d, e: b goes
      expect(cache.get(b, audiences)).toBeUndefined();
      expect([a, d, e].map((t) => cache.get(t, audiences))).toEqual(['a', 'd', 'e']);
      cache.clear();
      cache.set(b, audiences, 'b', 10_000);
      expect(cache.get(b, audiences)).toBe('b');
    });

    it('counts a set of an existing key as a use, without growing', () => {
      const cache = newCache(2);
      const [a, b, c] = [testToken(), testToken(), testToken()];
      cache.set(a, audiences, 'a', 10_000);
      cache.set(b, audiences, 'b', 10_000);
      cache.set(a, audiences, 'a2', 10_000);
      expect(cache.size).toBe(2);
      cache.set(c, audiences, 'c', 10_000);
      expect(cache.get(b, audiences)).toBeUndefined();
      expect(cache.get(a, audiences)).toBe('a2');
      expect(cache.get(c, audiences)).toBe('c');
    });

    it('never holds more than maxEntries', () => {
      const cache = newCache(50);
      for (let i = 0; i < 500; i++) {
        cache.set(testToken(), audiences, `value-${i}`, 10_000);
        expect(cache.size).toBeLessThanOrEqual(50);
      }
      expect(cache.size).toBe(50);
    });

    it('stores nothing with maxEntries 0', () => {
      const cache = newCache(0);
      const token = testToken();
      cache.set(token, audiences, 'allowed', 10_000);
      expect(cache.size).toBe(0);
      expect(cache.get(token, audiences)).toBeUndefined();
    });

    it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects maxEntries %p', (maxEntries) => {
      expect(() => new ReviewCache({ maxEntries })).toThrow(RangeError);
    });
  });

  describe('keys', () => {
    it('never holds the raw token', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, audiences, 'allowed', 10_000);
      const dump = inspect(cache, { depth: Infinity, showHidden: true, maxStringLength: Infinity });
      for (const segment of token.split('.')) expect(dump).not.toContain(segment);
    });

    it('uses a per-instance key: one token maps to different keys in different caches', () => {
      const token = testToken();
      const first = newCache();
      const second = newCache();
      first.set(token, audiences, 'allowed', 10_000);
      second.set(token, audiences, 'allowed', 10_000);
      const keysOf = (cache: ReviewCache<string>) => [
        ...(cache as unknown as { entries: Map<string, unknown> }).entries.keys(),
      ];
      expect(keysOf(first)).toHaveLength(1);
      expect(keysOf(first)[0]).not.toBe(keysOf(second)[0]);
    });

    it('computes one hash per get', () => {
      const cache = newCache();
      const token = testToken();
      cache.set(token, ['b', 'a'], 'allowed', 10_000);
      const digest = jest.spyOn(crypto, 'hash');
      try {
        expect(cache.get(token, ['a', 'b'])).toBe('allowed');
        expect(cache.get(testToken(), ['a', 'b'])).toBeUndefined();
        expect(digest).toHaveBeenCalledTimes(2);
      } finally {
        digest.mockRestore();
      }
    });
  });
});
