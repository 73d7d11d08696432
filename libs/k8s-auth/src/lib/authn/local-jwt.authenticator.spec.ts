import { Logger } from '@nestjs/common';
import { createHmac, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { kubernetesKeyId, serviceAccountClaims, signJwt, type JwtHeader } from '../../testing/jwt';
import { AuthenticationUnavailableError } from './authentication.types';
import { FakeApiServer, ISSUER } from './fake-api-server.spec-support';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import type { K8sAuthModuleOptions } from '../module/k8s-auth-options.interface';
import { resolveOptions } from '../module/resolved-options';
import { KubernetesApiError } from '../kube/kubernetes-api.client';
import { LocalJwtAuthenticator } from './local-jwt.authenticator';
import { SigningKeys } from './signing-keys';
import { createTokenAuthenticator } from './token-authenticator.provider';

// Local verification of whole tokens, with the API server's keys served by a fake; the same decisions against a
// real API server, side by side with TokenReview, are in local-jwt.authenticator.integration.spec.ts.

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const ec521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });

const SKEW_SECONDS = 60;
const now = () => Math.floor(Date.now() / 1000);

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

const token = (key: KeyObject = rsa.privateKey, overrides: Record<string, unknown> = {}, header?: JwtHeader) =>
  signJwt(key, claims(overrides), header);

const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const payloadOf = (jwt: string) => jwt.split('.')[1];

const INVALID = { accepted: false, reason: 'invalid token' };
/** No route allowlists anyone: what createTokenAuthenticator watches in local+watch. */
const NO_CALLERS = {
  allChecked: Promise.resolve(),
  allowlisted: () => ({ namespaces: new Set<string>(), serviceAccounts: new Set<string>() }),
};

describe('LocalJwtAuthenticator', () => {
  let api: FakeApiServer;
  let authenticator: LocalJwtAuthenticator;
  let keys: SigningKeys;
  let quiet: jest.SpyInstance[];

  beforeEach(() => {
    quiet = [
      jest.spyOn(Logger.prototype, 'debug').mockImplementation(() => undefined),
      jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined),
    ];
    api = new FakeApiServer([rsa.publicKey, ec256.publicKey, ec384.publicKey, ec521.publicKey]);
    keys = new SigningKeys(api.client, new K8sAuthMetrics({ metrics: false }), {
      refreshIntervalMs: 300_000,
      minRefreshIntervalMs: 1_000,
    });
    authenticator = new LocalJwtAuthenticator(keys, { clockSkewMs: SKEW_SECONDS * 1000, refuseUnknownBindings: true });
  });
  afterEach(() => {
    for (const spy of quiet) spy.mockRestore();
    jest.useRealTimers();
  });

  const authenticate = (jwt: string, audiences = ['secret-store']) => authenticator.authenticate(jwt, audiences);

  it.each([
    ['RS256', rsa],
    ['ES256', ec256],
    ['ES384', ec384],
    ['ES512', ec521],
  ] as const)('accepts a valid %s token, with the identity a TokenReview gives', async (alg, pair) => {
    const jwt = token(pair.privateKey);
    expect(JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString())).toEqual({
      alg,
      kid: kubernetesKeyId(pair.publicKey),
    });
    const { exp } = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as { exp: number };
    expect(await authenticate(jwt, ['other', 'secret-store'])).toEqual({
      accepted: true,
      expiresAt: exp * 1000,
      bindings: {
        serviceAccount: { name: 'api', uid: 'sa-uid' },
        pod: { name: 'api-0', uid: 'pod-uid' },
        unknown: [],
      },
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

  it('tries every published key of the algorithm for a token without a kid', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    api.keys = [other.publicKey, ec256.publicKey, rsa.publicKey];
    // The first RSA key's check fails, then the second one's succeeds.
    expect((await authenticate(token(rsa.privateKey, {}, { kid: undefined }))).accepted).toBe(true);
    expect(await authenticate(token(stranger.privateKey, {}, { kid: undefined }))).toEqual(INVALID);
  });

  it.each<[string, () => string]>([
    ['alg none with an empty signature', () => `${encode({ alg: 'none' })}.${payloadOf(token())}.`],
    [
      'alg none with a signature',
      () => `${encode({ alg: 'none', kid: kubernetesKeyId(rsa.publicKey) })}.${payloadOf(token())}.AAAA`,
    ],
    [
      'an HS256 HMAC keyed with the public key',
      () => {
        // The classic confusion: a verifier that takes the header's alg would check an HMAC with its public key.
        const input = `${encode({ alg: 'HS256', kid: kubernetesKeyId(rsa.publicKey) })}.${payloadOf(token())}`;
        const secret = rsa.publicKey.export({ type: 'spki', format: 'pem' });
        return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
      },
    ],
    ['an EdDSA token', () => token(generateKeyPairSync('ed25519').privateKey)],
    ['a kid that is not a string', () => token(rsa.privateKey, {}, { kid: 7 as unknown as string })],
    ['something that is not a JWT', () => 'not-a-jwt'],
    ['a JWT whose header is not JSON', () => `bm90IGpzb24.${payloadOf(token())}.c2ln`],
  ])('refuses %s without looking at any key', async (_what, forge) => {
    expect(await authenticate(forge())).toEqual(INVALID);
    expect(api.asked).toEqual([]);
  });

  it.each<[string, () => string]>([
    ['a crit header', () => token(rsa.privateKey, {}, { crit: ['exp'] })],
    [
      'a signature by another key under a published kid',
      () => token(stranger.privateKey, {}, { kid: kubernetesKeyId(rsa.publicKey) }),
    ],
    [
      'an edited payload',
      () => {
        const [header, , signature] = token().split('.');
        const edited = claims({
          sub: 'system:serviceaccount:kube-system:admin',
          'kubernetes.io': { namespace: 'kube-system', serviceaccount: { name: 'admin', uid: 'sa-uid' } },
        });
        return `${header}.${encode(edited)}.${signature}`;
      },
    ],
    [
      'a later exp edited in',
      () => {
        const [header, payload, signature] = token().split('.');
        const edited = JSON.parse(Buffer.from(payload, 'base64url').toString());
        return `${header}.${encode({ ...edited, exp: edited.exp + 86_400 })}.${signature}`;
      },
    ],
    ['another issuer', () => token(rsa.privateKey, { iss: 'https://issuer.example.com' })],
    [
      'an exp further back than the clock skew',
      () => token(rsa.privateKey, { iat: now() - 700, nbf: now() - 700, exp: now() - SKEW_SECONDS - 2 }),
    ],
    ['an nbf further ahead than the clock skew', () => token(rsa.privateKey, { nbf: now() + SKEW_SECONDS + 2 })],
    ['an iat further ahead than the clock skew', () => token(rsa.privateKey, { iat: now() + SKEW_SECONDS + 2 })],
    ['no exp', () => token(rsa.privateKey, { exp: undefined })],
    ['no sub', () => token(rsa.privateKey, { sub: undefined })],
    [
      'an ECDSA signature in DER rather than the JWS form',
      () => {
        const [header, payload] = token(ec256.privateKey).split('.');
        const der = sign('sha256', Buffer.from(`${header}.${payload}`), ec256.privateKey);
        return `${header}.${payload}.${der.toString('base64url')}`;
      },
    ],
    [
      "an RSA signature under an EC key's kid",
      () => token(rsa.privateKey, {}, { kid: kubernetesKeyId(ec256.publicKey) }),
    ],
  ])('refuses %s with "invalid token"', async (_what, forge) => {
    expect(await authenticate(forge())).toEqual(INVALID);
  });

  it('accepts an exp passed, and an nbf and iat ahead, within the clock skew', async () => {
    const iat = now() + SKEW_SECONDS - 5;
    expect((await authenticate(token(rsa.privateKey, { iat, nbf: iat }))).accepted).toBe(true);
    const old = now() - 700;
    expect((await authenticate(token(rsa.privateKey, { iat: old, nbf: old, exp: now() - 30 }))).accepted).toBe(true);
  });

  it("refuses a token bound to a kind of object it does not know, when asked to ('local' mode), and says why", async () => {
    const bound = token(rsa.privateKey, {
      'kubernetes.io': {
        namespace: 'api',
        serviceaccount: { name: 'api', uid: 'sa-uid' },
        mutatingwebhookconfiguration: { name: 'policy', uid: 'webhook-uid' },
      },
    });
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    expect(await authenticate(bound)).toEqual(INVALID);
    expect(warn).toHaveBeenCalledWith(
      expect.stringMatching(/"mutatingwebhookconfiguration" of kubernetes\.io bind it/),
    );
    const checksLater = new LocalJwtAuthenticator(keys, {
      clockSkewMs: SKEW_SECONDS * 1000,
      refuseUnknownBindings: false,
    });
    const result = await checksLater.authenticate(bound, ['secret-store']);
    expect(result.accepted && result.bindings?.unknown).toEqual(['mutatingwebhookconfiguration']);
  });

  it('refuses a token for another audience with "wrong audience"', async () => {
    expect(await authenticate(token(), ['data-store'])).toEqual({ accepted: false, reason: 'wrong audience' });
    expect(await authenticate(token(rsa.privateKey, { aud: [] }))).toEqual({
      accepted: false,
      reason: 'wrong audience',
    });
  });

  it('refuses a token signed with a key not published, once the keys have been fetched again', async () => {
    jest.useFakeTimers({ now: Date.now(), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    expect((await authenticate(token())).accepted).toBe(true);
    expect(api.fetches).toBe(1);
    jest.advanceTimersByTime(1_000);
    expect(await authenticate(token(stranger.privateKey))).toEqual(INVALID);
    expect(api.fetches).toBe(2);
    // A key id just fetched for and not found: refused at once, without another fetch.
    expect(await authenticate(token(stranger.privateKey))).toEqual(INVALID);
    expect(api.fetches).toBe(2);
  });

  it('accepts a token signed with a key rotated in since the keys were fetched', async () => {
    jest.useFakeTimers({ now: Date.now(), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    api.keys = [rsa.publicKey];
    await authenticate(token());
    api.keys = [rsa.publicKey, ec256.publicKey];
    jest.advanceTimersByTime(1_000);
    expect((await authenticate(token(ec256.privateKey))).accepted).toBe(true);
  });

  it('answers unavailable when it holds no keys and cannot fetch them', async () => {
    api.down = true;
    await expect(authenticate(token())).rejects.toBeInstanceOf(AuthenticationUnavailableError);
  });

  describe('as the module composes it (createTokenAuthenticator)', () => {
    const create = (options: K8sAuthModuleOptions) =>
      createTokenAuthenticator(
        resolveOptions({ audiences: ['secret-store'], ...options }),
        api.client,
        new K8sAuthMetrics({ metrics: false }),
        NO_CALLERS,
      );

    it('fetches the keys as the app starts, in the local modes only', () => {
      create({ verification: 'tokenReview' });
      create({});
      expect(api.asked).toEqual([]);
      create({ verification: 'local' });
      create({ verification: 'local+review' });
      expect(api.fetches).toBe(2);
    });

    it('in local+review, sends only the tokens verified locally to TokenReview', async () => {
      const reviews = jest.fn(async () => {
        throw new KubernetesApiError('unavailable', 'connect ECONNREFUSED');
      });
      Object.assign(api, { create: reviews });
      const authenticator = create({ verification: 'local+review' });
      expect(await authenticator.authenticate(token(stranger.privateKey), ['secret-store'])).toEqual(INVALID);
      expect(reviews).not.toHaveBeenCalled();
      await expect(authenticator.authenticate(token(), ['secret-store'])).rejects.toBeInstanceOf(
        AuthenticationUnavailableError,
      );
      expect(reviews).toHaveBeenCalledTimes(1);
    });

    it('refuses options a local mode cannot work with', () => {
      expect(() => create({ verification: 'local', audiences: 'api-server' })).toThrow(/own audience/);
      expect(() => create({ verification: 'local+review', audiences: 'api-server' })).toThrow(/own audience/);
      expect(() => create({ audiences: 'api-server' })).not.toThrow();
      expect(() => create({ verification: 'remote' as never })).toThrow(/verification must be/);
      expect(() => create({ verification: 'local', jwksMinRefreshIntervalMs: -1 })).toThrow(/jwksMinRefreshIntervalMs/);
      expect(() => create({ verification: 'local', clockSkewSeconds: Number.NaN })).toThrow(/clockSkewSeconds/);
    });
  });
});
