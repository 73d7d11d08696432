import { createHash, randomBytes } from 'node:crypto';
import { extractToken as extract, isCanonicalJws, TokenExtraction, TokenHeader, tokenHeadersOf } from './bearer-token';
import { tokenFingerprint } from '../observability/log-safe';
import { DEFAULTS } from '../module/k8s-auth.constants';
import { resolveOptions } from '../module/resolved-options';

// The guard passes the resolved maxTokenBytes; these cases use the default unless they name another.
const extractToken = (
  headers: Parameters<typeof extract>[0],
  accepted: readonly TokenHeader[],
  maxTokenBytes: number = DEFAULTS.maxTokenBytes,
) => extract(headers, accepted, maxTokenBytes);

// A JWT-shaped string built here, so no credential-looking literal lives in the repository.
function testJwt(payload: object = { sub: 'system:serviceaccount:team-a:billing' }): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'RS256', kid: 'test' })}.${encode(payload)}.${randomBytes(64).toString('base64url')}`;
}

const both: readonly TokenHeader[] = ['authorization', 'x-client-id'];

function expectMalformed(result: TokenExtraction, reasonPattern: RegExp): void {
  expect(result.kind).toBe('malformed');
  expect(result.kind === 'malformed' && result.reason).toMatch(reasonPattern);
}

describe('extractToken', () => {
  const token = testJwt();

  describe('Authorization: Bearer', () => {
    it('returns the token and the header it came from', () => {
      expect(extractToken({ authorization: `Bearer ${token}` }, both)).toEqual({
        kind: 'token',
        token,
        header: 'authorization',
      });
    });

    it.each(['bearer', 'BEARER', 'bEaReR'])('accepts the scheme spelled %s', (scheme) => {
      expect(extractToken({ authorization: `${scheme} ${token}` }, both)).toMatchObject({ kind: 'token', token });
    });

    it.each([
      ['several spaces', '   '],
      ['a tab', '\t'],
      ['spaces and tabs', ' \t '],
    ])('accepts %s between scheme and token', (_, separator) => {
      expect(extractToken({ authorization: `Bearer${separator}${token}` }, both)).toMatchObject({
        kind: 'token',
        token,
      });
    });

    it.each([
      ['Basic credentials', `Basic ${Buffer.from('user:password').toString('base64')}`],
      ['a token without a scheme', token],
      ['a scheme glued to the token', `Bearer${token}`],
      ['a scheme that starts with Bearer', `Bearerx ${token}`],
      ['Token scheme', `Token ${token}`],
    ])('refuses %s as not Bearer', (_, value) => {
      expectMalformed(extractToken({ authorization: value }, both), /not Bearer/);
    });

    it.each(['Bearer', 'Bearer ', 'bearer \t '])('refuses the scheme without a token (%j)', (value) => {
      expectMalformed(extractToken({ authorization: value }, both), /no token/);
    });

    it.each([
      ['trailing garbage', `Bearer ${token} extra`],
      ['a trailing space', `Bearer ${token} `],
      ['a leading space', ` Bearer ${token}`],
      ['a space inside the token', `Bearer ${token.slice(0, 10)} ${token.slice(10)}`],
    ])('refuses %s', (_, value) => {
      expect(extractToken({ authorization: value }, both).kind).toBe('malformed');
    });

    it('refuses a comma-separated value as several values', () => {
      expectMalformed(extractToken({ authorization: `Bearer ${token}, Bearer ${token}` }, both), /several values/);
      expectMalformed(extractToken({ authorization: `Bearer ${token},` }, both), /several values/);
    });
  });

  describe('X-Client-Id', () => {
    it('returns the raw token', () => {
      expect(extractToken({ 'x-client-id': token }, both)).toEqual({ kind: 'token', token, header: 'x-client-id' });
    });

    it.each([
      ['a leading space', ` ${token}`],
      ['a trailing space', `${token} `],
      ['a trailing tab', `${token}\t`],
      ['a space inside', `${token.slice(0, 5)} ${token.slice(5)}`],
    ])('refuses %s', (_, value) => {
      expectMalformed(extractToken({ 'x-client-id': value }, both), /whitespace/);
    });

    it('refuses a Bearer prefix (the header carries the bare token)', () => {
      expectMalformed(extractToken({ 'x-client-id': `Bearer ${token}` }, both), /whitespace/);
    });

    it('refuses the value Node makes of a repeated header', () => {
      expectMalformed(extractToken({ 'x-client-id': `${token}, ${token}` }, both), /several values/);
    });
  });

  describe('which headers are read', () => {
    it('reports missing when no accepted header is present', () => {
      expect(extractToken({}, both)).toEqual({ kind: 'missing' });
      expect(extractToken({ host: 'example', accept: '*/*' }, both)).toEqual({ kind: 'missing' });
      expect(extractToken({ authorization: undefined }, both)).toEqual({ kind: 'missing' });
    });

    it('ignores headers that are not accepted', () => {
      expect(extractToken({ 'x-client-id': token }, ['authorization'])).toEqual({ kind: 'missing' });
      expect(extractToken({ authorization: `Bearer ${token}` }, ['x-client-id'])).toEqual({ kind: 'missing' });
      expect(extractToken({ authorization: `Bearer ${token}` }, [])).toEqual({ kind: 'missing' });
    });

    it('does not count an unaccepted header towards "more than one header"', () => {
      const headers = { authorization: 'Basic dXNlcjpwYXNz', 'x-client-id': token };
      expect(extractToken(headers, ['x-client-id'])).toEqual({ kind: 'token', token, header: 'x-client-id' });
    });

    it('refuses tokens in two accepted headers (RFC 6750: one method per request)', () => {
      const headers = { authorization: `Bearer ${token}`, 'x-client-id': token };
      expectMalformed(extractToken(headers, both), /more than one header/);
    });

    it('refuses two accepted headers even when one is empty', () => {
      expectMalformed(extractToken({ authorization: '', 'x-client-id': token }, both), /more than one header/);
    });

    it('is not confused by an accepted header listed twice', () => {
      expect(extractToken({ 'x-client-id': token }, ['x-client-id', 'x-client-id'])).toMatchObject({ kind: 'token' });
    });

    it.each<[string, string[]]>([
      ['two values', [`Bearer ${token}`, `Bearer ${token}`]],
      ['one value', [`Bearer ${token}`]],
      ['no values', []],
    ])('refuses an array value with %s as several values', (_, value) => {
      expectMalformed(extractToken({ authorization: value }, both), /several values/);
      expectMalformed(extractToken({ 'x-client-id': value }, both), /several values/);
    });
  });

  describe('content', () => {
    it.each(['', ' ', '\t', '  \t  '])('refuses an empty or blank value (%j)', (value) => {
      expectMalformed(extractToken({ authorization: value }, both), /empty/);
      expectMalformed(extractToken({ 'x-client-id': value }, both), /empty/);
    });

    it.each([
      ['NUL', '\u0000'],
      ['newline', '\n'],
      ['carriage return', '\r'],
      ['DEL', '\u007f'],
      ['Latin-1', '\u00e9'],
      ['a non-breaking space', '\u00a0'],
      ['an emoji', '\u{1f600}'],
      ['a full-width letter', '\uff41'],
    ])('refuses %s anywhere in the value', (_, character) => {
      for (const value of [
        `${character}${token}`,
        `${token}${character}`,
        `${token.slice(0, 8)}${character}${token.slice(8)}`,
      ]) {
        expectMalformed(extractToken({ 'x-client-id': value }, both), /control or non-ASCII/);
        expectMalformed(extractToken({ authorization: `Bearer ${value}` }, both), /control or non-ASCII/);
      }
    });

    it.each([
      ['two segments', 'aaaa.bbbb'],
      ['four segments', 'aaaa.bbbb.cccc.dddd'],
      ['an empty signature', 'aaaa.bbbb.'],
      ['an empty header', '.bbbb.cccc'],
      ['an empty payload', 'aaaa..cccc'],
      ['standard base64 characters', 'aa+a.bb/b.cccc'],
      ['base64 padding', 'aaaa.bbb=.cccc'],
      ['no dots at all', 'opaque-token'],
      ['only dots', '..'],
      ['other punctuation', 'aaaa.bbbb.cc!c'],
    ])('refuses a token with %s', (_, value) => {
      expectMalformed(extractToken({ 'x-client-id': value }, both), /not a JWT/);
      expectMalformed(extractToken({ authorization: `Bearer ${value}` }, both), /not a JWT/);
    });

    it('accepts a token of exactly maxTokenBytes and refuses one byte more', () => {
      const exact = `${'a'.repeat(49)}A.${'b'.repeat(40)}.${'c'.repeat(9)}A`;
      expect(exact).toHaveLength(102);
      expect(extractToken({ 'x-client-id': exact }, both, 102)).toMatchObject({ kind: 'token', token: exact });
      expect(extractToken({ authorization: `Bearer ${exact}` }, both, 102)).toMatchObject({ kind: 'token' });
      expectMalformed(extractToken({ 'x-client-id': exact }, both, 101), /longer than 101 bytes/);
      expectMalformed(extractToken({ authorization: `Bearer ${exact}` }, both, 101), /longer than 101 bytes/);
    });

    it('applies the default maxTokenBytes (16 KiB) when the option is not set', () => {
      const { maxTokenBytes } = resolveOptions({});
      expect(maxTokenBytes).toBe(16384);
      const segment = (length: number) => `${'x'.repeat(length - 1)}A`;
      const atLimit = `${segment(8000)}.${segment(8000)}.${segment(maxTokenBytes - 16002)}`;
      expect(atLimit).toHaveLength(maxTokenBytes);
      expect(extract({ 'x-client-id': atLimit }, both, maxTokenBytes).kind).toBe('token');
      expectMalformed(extract({ 'x-client-id': `${atLimit}x` }, both, maxTokenBytes), /longer than 16384 bytes/);
    });

    // Checked once, as the module starts, rather than on every request.
    it.each([0, -1, 1.5, Number.NaN])('refuses maxTokenBytes %p at start-up', (maxTokenBytes) => {
      expect(() => resolveOptions({ maxTokenBytes })).toThrow(
        `K8sAuthModule option maxTokenBytes must be a positive integer, got ${maxTokenBytes}`,
      );
    });
  });

  describe('reasons are safe to log', () => {
    const secret = testJwt({ secret: 'do-not-log' });
    const cases: Record<string, string | string[]>[] = [
      { authorization: secret },
      { authorization: `Basic ${secret}` },
      { authorization: `Bearer ${secret} trailing` },
      { authorization: `Bearer ${secret}, other` },
      { authorization: `Bearer ${secret}\n` },
      { authorization: [`Bearer ${secret}`, `Bearer ${secret}`] },
      { 'x-client-id': ` ${secret}` },
      { 'x-client-id': `${secret}.extra` },
      { 'x-client-id': `${secret}\u00e9` },
      { authorization: `Bearer ${secret}`, 'x-client-id': secret },
    ];

    it.each(cases)('never contains any part of the header value (%#)', (headers) => {
      const result = extractToken(headers, both, 4096);
      expect(result.kind).toBe('malformed');
      const reason = result.kind === 'malformed' ? result.reason : '';
      for (const segment of secret.split('.')) expect(reason).not.toContain(segment.slice(0, 8));
    });

    it('never contains the token when it is too long', () => {
      const result = extractToken({ 'x-client-id': secret }, both, 20);
      expectMalformed(result, /longer than/);
      expect(result.kind === 'malformed' && result.reason).not.toContain(secret.slice(0, 8));
    });
  });
});

describe('isCanonicalJws', () => {
  it('accepts what an encoder writes, for every length a segment can have', () => {
    for (let bytes = 1; bytes <= 6; bytes++) {
      const segment = Buffer.from(randomBytes(bytes)).toString('base64url');
      expect(isCanonicalJws(`${segment}.${segment}.${segment}`)).toBe(true);
    }
  });

  it.each([
    ['spare bits set after one byte (2 characters)', 'QB'],
    ['spare bits set after two bytes (3 characters)', 'QUF'],
    ['an impossible length', 'QUFBQ'],
  ])('refuses %s', (_, segment) => {
    expect(Buffer.from(segment, 'base64url').length).toBeGreaterThan(0);
    expect(isCanonicalJws(`QQ.${segment}.QQ`)).toBe(false);
  });

  it('makes extractToken refuse another spelling of a token (401, no review)', () => {
    const token = testJwt();
    const [header, payload, signature] = token.split('.');
    // 64 bytes: 86 characters, the last with 4 spare bits; flipping one leaves the bytes as they are.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(signature[signature.length - 1]);
    const respelled = `${header}.${payload}.${signature.slice(0, -1)}${alphabet[last ^ 1]}`;
    expect(Buffer.from(respelled.split('.')[2], 'base64url')).toEqual(Buffer.from(signature, 'base64url'));
    expect(extractToken({ authorization: `Bearer ${token}` }, both).kind).toBe('token');
    expectMalformed(extractToken({ authorization: `Bearer ${respelled}` }, both), /not canonical base64url/);
  });
});

describe('tokenHeadersOf', () => {
  it('keeps every value of a repeated header, which Node reduces to the first in `headers`', () => {
    const [first, second] = [testJwt(), testJwt()];
    const request = {
      headers: { authorization: `Bearer ${first}` },
      headersDistinct: { authorization: [`Bearer ${first}`, `Bearer ${second}`] },
    };
    const headers = tokenHeadersOf(request, ['authorization']);
    expect(headers).toEqual({ authorization: [`Bearer ${first}`, `Bearer ${second}`] });
    expectMalformed(extractToken(headers, ['authorization']), /several values/);
  });

  it('passes a header sent once, and reads only the accepted ones', () => {
    const token = testJwt();
    const request = {
      headers: { authorization: `Bearer ${token}`, 'x-client-id': token },
      headersDistinct: { authorization: [`Bearer ${token}`], 'x-client-id': [token] },
    };
    expect(tokenHeadersOf(request, ['authorization'])).toEqual({ authorization: `Bearer ${token}` });
    expect(tokenHeadersOf({ headers: { authorization: 'Bearer x' } }, ['authorization'])).toEqual({
      authorization: 'Bearer x',
    });
  });

  it('finds repeats in rawHeaders (any case) and reads headersDistinct only then', () => {
    const [first, second] = [testJwt(), testJwt()];
    const distinct = jest.fn(() => ({ authorization: [`Bearer ${first}`, `Bearer ${second}`] }));
    const request = {
      headers: { authorization: `Bearer ${first}` },
      rawHeaders: ['Host', 'x', 'Authorization', `Bearer ${first}`, 'AUTHORIZATION', `Bearer ${second}`],
      get headersDistinct() {
        return distinct();
      },
    };
    expect(tokenHeadersOf(request, ['authorization'])).toEqual({
      authorization: [`Bearer ${first}`, `Bearer ${second}`],
    });
    expect(distinct).toHaveBeenCalledTimes(1);

    const once = {
      headers: { authorization: `Bearer ${first}` },
      rawHeaders: ['Authorization', `Bearer ${first}`],
      get headersDistinct() {
        return distinct();
      },
    };
    expect(tokenHeadersOf(once, ['authorization', 'x-client-id'])).toEqual({
      authorization: `Bearer ${first}`,
      'x-client-id': undefined,
    });
    expect(distinct).toHaveBeenCalledTimes(1);
  });
});

describe('tokenFingerprint', () => {
  it('is the first 12 hex characters of the SHA-256 of the token', () => {
    const token = testJwt();
    expect(tokenFingerprint(token)).toBe(createHash('sha256').update(token).digest('hex').slice(0, 12));
    expect(tokenFingerprint(token)).toMatch(/^[0-9a-f]{12}$/);
  });

  it('matches a known SHA-256 value', () => {
    // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad (FIPS 180-2 test vector)
    expect(tokenFingerprint('abc')).toBe('ba7816bf8f01');
  });

  it('is stable for one token and differs between tokens', () => {
    const first = testJwt();
    const second = testJwt();
    expect(tokenFingerprint(first)).toBe(tokenFingerprint(first));
    expect(tokenFingerprint(first)).not.toBe(tokenFingerprint(second));
  });
});
