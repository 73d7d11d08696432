import { createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { kubernetesKeyId, serviceAccountClaims, signJwt } from '../testing/jwt';
import {
  checkServiceAccountClaims,
  type DecodedJws,
  decodeJws,
  isSupportedAlgorithm,
  parseJwks,
  type VerificationKey,
  runSignatureCheck,
  signatureCheck,
} from './service-account-jwt';

const ISSUER = 'https://127.0.0.1:6443';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const ec521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });

function jwkOf(key: KeyObject, extra: Record<string, unknown> = {}) {
  return { ...key.export({ format: 'jwk' }), kid: kubernetesKeyId(key), use: 'sig', ...extra };
}

function decoded(token: string): DecodedJws {
  const jws = decodeJws(token);
  if (!jws) throw new Error('not decoded');
  return jws;
}

function keyOf(pair: { publicKey: KeyObject }): VerificationKey {
  const parsed = parseJwks({ keys: [jwkOf(pair.publicKey)] }).keys[0];
  if (!parsed) throw new Error('key not parsed');
  return parsed;
}

const claims = (overrides: Record<string, unknown> = {}) => ({
  ...serviceAccountClaims({
    issuer: ISSUER,
    namespace: 'api',
    serviceAccount: 'api',
    serviceAccountUid: 'sa-uid',
    audiences: ['secret-store'],
    pod: { name: 'api-0', uid: 'pod-uid' },
    jti: 'the-jti',
  }),
  ...overrides,
});

const expect_ = (audiences = ['secret-store'], nowMs = Date.now()) => ({
  issuer: ISSUER,
  audiences,
  nowMs,
  clockSkewMs: 60_000,
});

describe('parseJwks', () => {
  it('reads RSA and EC signing keys with their kid and algorithm', () => {
    const { keys, skipped } = parseJwks({
      keys: [
        jwkOf(rsa.publicKey, { alg: 'RS256' }),
        jwkOf(ec256.publicKey),
        jwkOf(ec384.publicKey),
        jwkOf(ec521.publicKey),
      ],
    });
    expect(skipped).toBe(0);
    expect(keys.map((k) => k.alg)).toEqual(['RS256', 'ES256', 'ES384', 'ES512']);
    expect(keys[0].kid).toBe(kubernetesKeyId(rsa.publicKey));
  });

  it('skips keys for encryption, symmetric keys, unknown curves, short RSA keys and keys whose alg does not fit', () => {
    const { keys, skipped } = parseJwks({
      keys: [
        jwkOf(rsa.publicKey, { use: 'enc' }),
        { kty: 'oct', k: 'c2VjcmV0', alg: 'HS256' },
        { kty: 'EC', crv: 'secp256k1', x: 'AA', y: 'AA' },
        jwkOf(rsa.publicKey, { alg: 'none' }),
        jwkOf(rsa.publicKey, { alg: 'HS256' }),
        jwkOf(ec256.publicKey, { alg: 'ES384' }),
        { kty: 'RSA', n: '!!', e: 'AQAB' },
        jwkOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey),
        'nonsense',
        jwkOf(rsa.publicKey),
      ],
    });
    expect(skipped).toBe(9);
    expect(keys).toHaveLength(1);
  });

  it('keeps only the public part of a key that carries its private part', () => {
    const { keys } = parseJwks({ keys: [{ ...rsa.privateKey.export({ format: 'jwk' }), kid: 'k' }] });
    expect(keys[0].key.type).toBe('public');
  });

  it('refuses a document without a key list', () => {
    expect(() => parseJwks({})).toThrow(/no "keys" list/);
    expect(() => parseJwks(null)).toThrow(/no "keys" list/);
  });
});

// What the local verifier does with a key, on whichever thread.
function verifySignature(jws: DecodedJws, key: VerificationKey): boolean {
  const check = signatureCheck(jws, key);
  return check !== undefined && runSignatureCheck(check);
}

describe('decodeJws, signatureCheck and runSignatureCheck', () => {
  it.each([
    ['RS256', rsa],
    ['ES256', ec256],
    ['ES384', ec384],
    ['ES512', ec521],
  ] as const)('verifies %s', (alg, pair) => {
    const jws = decoded(signJwt(pair.privateKey, claims()));
    expect(jws.header['alg']).toBe(alg);
    expect(verifySignature(jws, keyOf(pair))).toBe(true);
  });

  it('refuses a signature by another key, and an edited payload', () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const token = signJwt(other.privateKey, claims());
    expect(verifySignature(decoded(token), keyOf(rsa))).toBe(false);

    const [header, , signature] = signJwt(rsa.privateKey, claims()).split('.');
    const edited = Buffer.from(JSON.stringify(claims({ sub: 'system:serviceaccount:kube-system:admin' }))).toString(
      'base64url',
    );
    expect(verifySignature(decoded(`${header}.${edited}.${signature}`), keyOf(rsa))).toBe(false);
  });

  it('refuses when the header names another algorithm than the key', () => {
    // An ES256 signature presented under an RSA key's kid, and an RSA one claiming ES256.
    const ecToken = signJwt(ec256.privateKey, claims(), { kid: kubernetesKeyId(rsa.publicKey) });
    expect(verifySignature(decoded(ecToken), keyOf(rsa))).toBe(false);
    const lying = signJwt(rsa.privateKey, claims(), { alg: 'ES256' });
    expect(verifySignature(decoded(lying), keyOf(ec256))).toBe(false);
  });

  it('refuses an ECDSA signature in DER rather than the JWS form', () => {
    const token = signJwt(ec256.privateKey, claims());
    const [h, p] = token.split('.');
    const der = sign('sha256', Buffer.from(`${h}.${p}`), ec256.privateKey);
    expect(verifySignature(decoded(`${h}.${p}.${der.toString('base64url')}`), keyOf(ec256))).toBe(false);
  });

  it('knows only RS256 and ES256/384/512', () => {
    for (const alg of ['RS256', 'ES256', 'ES384', 'ES512']) expect(isSupportedAlgorithm(alg)).toBe(true);
    for (const alg of ['none', 'None', 'HS256', 'PS256', 'RS512', 'EdDSA', '', undefined, 'toString', '__proto__']) {
      expect(isSupportedAlgorithm(alg)).toBe(false);
    }
  });

  it.each([
    ['two parts', 'a.b'],
    ['four parts', 'a.b.c.d'],
    ['a header that is not JSON', `bm90IGpzb24.${Buffer.from('{}').toString('base64url')}.c2ln`],
    ['a payload that is an array', `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.W10.c2ln`],
    ['padding', `${Buffer.from('{"alg":"RS256"} ').toString('base64')}.e30.c2ln`],
    ['an empty signature', `${Buffer.from('{"alg":"none"}').toString('base64url')}.e30.`],
    ['a segment of impossible length', `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.e30.abcde`],
    [
      'a payload that is not UTF-8',
      `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]).toString('base64url')}.c2ln`,
    ],
  ])('does not decode %s', (_what, token) => {
    expect(decodeJws(token)).toBeUndefined();
  });

  it('decodes claims that are UTF-8 beyond ASCII', () => {
    const payload = Buffer.from(JSON.stringify({ note: 'grüße 日本' })).toString('base64url');
    expect(decodeJws(`${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${payload}.c2ln`)?.payload).toEqual({
      note: 'grüße 日本',
    });
  });
});

describe('checkServiceAccountClaims', () => {
  it('builds the identity a TokenReview gives', () => {
    expect(checkServiceAccountClaims(claims(), expect_(['other', 'secret-store']))).toEqual({
      accepted: true,
      caller: {
        username: 'system:serviceaccount:api:api',
        namespace: 'api',
        serviceAccount: 'api',
        uid: 'sa-uid',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:api', 'system:authenticated'],
        podName: 'api-0',
        podUid: 'pod-uid',
        nodeName: undefined,
        audiences: ['secret-store'],
        extra: {
          'authentication.kubernetes.io/credential-id': ['JTI=the-jti'],
          'authentication.kubernetes.io/pod-name': ['api-0'],
          'authentication.kubernetes.io/pod-uid': ['pod-uid'],
        },
      },
    });
  });

  it('passes on the node a token is bound to', () => {
    const k8s = { ...(claims()['kubernetes.io'] as object), node: { name: 'node-1', uid: 'node-uid' } };
    const result = checkServiceAccountClaims(claims({ 'kubernetes.io': k8s }), expect_());
    expect(result.accepted && result.caller.nodeName).toBe('node-1');
    expect(result.accepted && result.caller.extra?.['authentication.kubernetes.io/node-uid']).toEqual(['node-uid']);
  });

  it('accepts a single audience string and a token bound to no pod', () => {
    const k8s = { namespace: 'api', serviceaccount: { name: 'api', uid: 'sa-uid' } };
    const result = checkServiceAccountClaims(claims({ aud: 'secret-store', 'kubernetes.io': k8s }), expect_());
    expect(result.accepted && result.caller.podName).toBeUndefined();
  });

  it('refuses another audience with "wrong audience"', () => {
    expect(checkServiceAccountClaims(claims(), expect_(['data-store']))).toEqual({
      accepted: false,
      reason: 'wrong audience',
    });
    expect(checkServiceAccountClaims(claims(), expect_([]))).toEqual({ accepted: false, reason: 'wrong audience' });
  });

  const now = Date.now();
  const seconds = Math.floor(now / 1000);
  it.each([
    ['another issuer', { iss: 'https://evil.example' }],
    ['no issuer', { iss: undefined }],
    ['an audience list with a number', { aud: ['secret-store', 1] }],
    ['no audience', { aud: undefined }],
    ['no exp', { exp: undefined }],
    ['an exp that is a string', { exp: String(seconds + 600) }],
    ['an exp more than the clock skew ago', { exp: seconds - 61 }],
    ['an nbf more than the clock skew ahead', { nbf: seconds + 61 }],
    ['an iat more than the clock skew ahead', { iat: seconds + 61 }],
    ['no kubernetes.io claims', { 'kubernetes.io': undefined }],
    ['a sub of another account', { sub: 'system:serviceaccount:kube-system:admin' }],
    ['a sub that is not a service account', { sub: 'admin' }],
    [
      'a namespace that is not a name',
      { 'kubernetes.io': { namespace: 'A_B', serviceaccount: { name: 'api', uid: 'u' } } },
    ],
    ['no service account uid', { 'kubernetes.io': { namespace: 'api', serviceaccount: { name: 'api' } } }],
    [
      'a malformed pod',
      { 'kubernetes.io': { namespace: 'api', serviceaccount: { name: 'api', uid: 'u' }, pod: { name: 'p' } } },
    ],
    ['a jti that is not a string', { jti: 7 }],
  ])('refuses %s with "invalid token"', (_what, overrides) => {
    expect(checkServiceAccountClaims(claims(overrides), expect_(['secret-store'], now))).toEqual({
      accepted: false,
      reason: 'invalid token',
    });
  });

  it('tolerates the clock skew on exp and nbf', () => {
    expect(checkServiceAccountClaims(claims({ exp: seconds - 30 }), expect_(['secret-store'], now)).accepted).toBe(
      true,
    );
    expect(checkServiceAccountClaims(claims({ nbf: seconds + 30 }), expect_(['secret-store'], now)).accepted).toBe(
      true,
    );
  });
});

describe('signJwt (testing helper)', () => {
  it('names the key as Kubernetes does and can leave the kid out', () => {
    const token = signJwt(rsa.privateKey, {});
    expect(decodeJws(token)?.header).toEqual({ alg: 'RS256', kid: kubernetesKeyId(createPublicKey(rsa.privateKey)) });
    expect(decodeJws(signJwt(rsa.privateKey, {}, { kid: undefined }))?.header).toEqual({ alg: 'RS256' });
  });
});
