import { randomBytes } from 'node:crypto';
import { MalformedTokenError, readTokenTimes, renewalTime } from './token-times';

const encode = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
const header = encode(JSON.stringify({ alg: 'RS256', kid: 'test' }));
const signature = () => randomBytes(64).toString('base64url');

// JWT-shaped strings built at run time; `payload` is the raw JSON text so malformed payloads can be tested too.
function jwtWithPayloadText(payloadText: string): string {
  return `${header}.${encode(payloadText)}.${signature()}`;
}
function testJwt(claims: Record<string, unknown>): string {
  return jwtWithPayloadText(JSON.stringify(claims));
}

describe('readTokenTimes', () => {
  it('reads iat, nbf and exp as Dates', () => {
    const times = readTokenTimes(testJwt({ iat: 1_700_000_000, nbf: 1_700_000_000, exp: 1_700_003_600 }));
    expect(times).toEqual({
      issuedAt: new Date('2023-11-14T22:13:20.000Z'),
      notBefore: new Date('2023-11-14T22:13:20.000Z'),
      expiresAt: new Date('2023-11-14T23:13:20.000Z'),
    });
  });

  it('reads the claims of a Kubernetes-style payload and ignores the others', () => {
    const times = readTokenTimes(
      testJwt({
        aud: ['https://kubernetes.default.svc'],
        exp: 1_700_003_607,
        iat: 1_700_000_007,
        iss: 'https://kubernetes.default.svc',
        'kubernetes.io': { namespace: 'team-a', serviceaccount: { name: 'billing', uid: 'u' } },
        nbf: 1_700_000_007,
        sub: 'system:serviceaccount:team-a:billing',
      }),
    );
    expect(times.issuedAt?.getTime()).toBe(1_700_000_007_000);
    expect(times.notBefore?.getTime()).toBe(1_700_000_007_000);
    expect(times.expiresAt?.getTime()).toBe(1_700_003_607_000);
    expect(Object.keys(times).sort()).toEqual(['expiresAt', 'issuedAt', 'notBefore']);
  });

  it('keeps fractional seconds', () => {
    expect(readTokenTimes(testJwt({ exp: 1_700_000_000.25 })).expiresAt?.getTime()).toBe(1_700_000_000_250);
  });

  it('leaves out missing claims', () => {
    expect(readTokenTimes(testJwt({ sub: 'x' }))).toEqual({});
    expect(readTokenTimes(testJwt({ exp: 1_700_000_000 }))).toEqual({ expiresAt: new Date(1_700_000_000_000) });
  });

  it.each([
    ['a string', '1700000000'],
    ['null', null],
    ['a boolean', true],
    ['an object', { seconds: 1_700_000_000 }],
    ['an array', [1_700_000_000]],
    ['a number beyond Date range', 1e300],
  ])('ignores a claim that is %s', (_, value) => {
    expect(readTokenTimes(testJwt({ iat: value, nbf: value, exp: value }))).toEqual({});
  });

  it('ignores non-finite numbers written as overflowing literals', () => {
    expect(readTokenTimes(jwtWithPayloadText('{"exp":1e400,"iat":-1e400}'))).toEqual({});
  });

  it('does not check the signature', () => {
    const payload = encode(JSON.stringify({ exp: 1_700_000_000 }));
    expect(readTokenTimes(`${header}.${payload}.not-a-real-signature`).expiresAt).toEqual(new Date(1_700_000_000_000));
  });

  it.each([
    ['JSON that is an array', jwtWithPayloadText('[1,2,3]')],
    ['JSON that is a string', jwtWithPayloadText('"exp"')],
    ['JSON that is a number', jwtWithPayloadText('1700000000')],
    ['JSON null', jwtWithPayloadText('null')],
    ['text that is not JSON', jwtWithPayloadText('exp=1700000000')],
    ['truncated JSON', jwtWithPayloadText('{"exp":17')],
    ['standard base64 characters', `${header}.${Buffer.from('{"a":">>>?"}').toString('base64')}.${signature()}`],
    ['base64 padding', `${header}.${Buffer.from('{}').toString('base64')}.${signature()}`],
    ['an empty payload', `${header}..${signature()}`],
    ['two segments', `${header}.${encode('{}')}`],
    ['four segments', `${header}.${encode('{}')}.${signature()}.extra`],
    ['one segment', 'opaque'],
    ['nothing', ''],
  ])('throws MalformedTokenError for %s', (_, token) => {
    expect(() => readTokenTimes(token)).toThrow(MalformedTokenError);
  });

  it('never puts the token in the error message', () => {
    const token = jwtWithPayloadText('not json at all');
    let message = '';
    try {
      readTokenTimes(token);
    } catch (error) {
      expect(error).toBeInstanceOf(MalformedTokenError);
      expect((error as Error).name).toBe('MalformedTokenError');
      message = (error as Error).message;
    }
    expect(message).not.toBe('');
    for (const segment of token.split('.')) expect(message).not.toContain(segment.slice(0, 8));
  });
});

describe('renewalTime', () => {
  const issuedAt = new Date('2025-01-01T00:00:00Z');
  const expiresAt = new Date('2025-01-01T01:00:00Z');

  it('is 80 % of the way from iat to exp by default', () => {
    expect(renewalTime({ issuedAt, expiresAt })).toEqual(new Date('2025-01-01T00:48:00Z'));
  });

  it('uses the given fraction', () => {
    expect(renewalTime({ issuedAt, expiresAt }, 0.5)).toEqual(new Date('2025-01-01T00:30:00Z'));
    expect(renewalTime({ issuedAt, expiresAt }, 0)).toEqual(issuedAt);
    expect(renewalTime({ issuedAt, expiresAt }, 1)).toEqual(expiresAt);
  });

  it('ignores nbf', () => {
    const notBefore = new Date('2025-01-01T00:30:00Z');
    expect(renewalTime({ issuedAt, notBefore, expiresAt })).toEqual(new Date('2025-01-01T00:48:00Z'));
  });

  it('is undefined without iat or exp', () => {
    expect(renewalTime({ expiresAt })).toBeUndefined();
    expect(renewalTime({ issuedAt })).toBeUndefined();
    expect(renewalTime({ notBefore: issuedAt })).toBeUndefined();
    expect(renewalTime({})).toBeUndefined();
  });

  it('is no later than iat for a token that expires before it is issued, so the caller renews at once', () => {
    const renewal = renewalTime({ issuedAt: expiresAt, expiresAt: issuedAt });
    expect(renewal?.getTime()).toBeLessThanOrEqual(expiresAt.getTime());
  });

  it.each([-0.1, 1.1, Number.NaN, Number.POSITIVE_INFINITY])('rejects fraction %p', (fraction) => {
    expect(() => renewalTime({ issuedAt, expiresAt }, fraction)).toThrow(RangeError);
  });

  it('works on the result of readTokenTimes', () => {
    const times = readTokenTimes(testJwt({ iat: 1_700_000_000, exp: 1_700_003_600 }));
    expect(renewalTime(times)?.getTime()).toBe(1_700_002_880_000);
  });
});
