import { Logger } from '@nestjs/common';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { kubernetesKeyId, serviceAccountClaims, signJwt } from '../testing/jwt';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { type KubernetesApiClient, KubernetesApiError } from './kubernetes-api.client';
import { LocalTokenVerifier } from './local-token-verifier';
import { SignatureVerifier } from './signature-verifier';
import { ReviewUnavailableError } from './token-reviewer';

// The key cache and refresh rules, with the API server's discovery documents served by a fake; the verification
// itself against a real API server is in local-token-verifier.integration.spec.ts.

const ISSUER = 'https://127.0.0.1:6443';
const first = generateKeyPairSync('rsa', { modulusLength: 2048 });
const second = generateKeyPairSync('ec', { namedCurve: 'P-256' });

class FakeApiServer {
  keys: KeyObject[] = [first.publicKey];
  down = false;
  readonly asked: string[] = [];
  private pending: Array<() => void> = [];
  hold = false;

  async get<T>(path: string): Promise<T> {
    this.asked.push(path);
    if (this.hold) await new Promise<void>((resolve) => this.pending.push(resolve));
    if (this.down) throw new KubernetesApiError('unavailable', `${path}: connect ECONNREFUSED`);
    if (path === '/.well-known/openid-configuration') {
      return { issuer: ISSUER, jwks_uri: `${ISSUER}/openid/v1/jwks` } as T;
    }
    if (path === '/openid/v1/jwks') {
      return {
        keys: this.keys.map((k) => ({ ...k.export({ format: 'jwk' }), kid: kubernetesKeyId(k), use: 'sig' })),
      } as T;
    }
    throw new KubernetesApiError('rejected', `${path}: HTTP 404`);
  }

  isApiServer(url: URL): boolean {
    return url.origin === ISSUER;
  }

  release(): void {
    this.hold = false;
    for (const resolve of this.pending.splice(0)) resolve();
  }

  get jwksFetches(): number {
    return this.asked.filter((p) => p === '/openid/v1/jwks').length;
  }
}

function token(key: KeyObject, audiences = ['secret-store'], expirationSeconds = 600): string {
  return signJwt(
    key,
    serviceAccountClaims({
      issuer: ISSUER,
      namespace: 'api',
      serviceAccount: 'api',
      serviceAccountUid: 'sa-uid',
      audiences,
      expirationSeconds,
    }),
  );
}

describe('LocalTokenVerifier', () => {
  // Every new verification thread logs its start at debug level: not wanted in the test output.
  let quiet: jest.SpyInstance;
  beforeAll(() => (quiet = jest.spyOn(Logger.prototype, 'debug').mockImplementation(() => undefined)));
  afterAll(() => quiet.mockRestore());
  let api: FakeApiServer;
  const made: LocalTokenVerifier[] = [];
  const make = (options: K8sAuthModuleOptions = {}) => {
    const verifier = new LocalTokenVerifier(
      { verification: 'local', audiences: ['secret-store'], jwksMinRefreshIntervalMs: 1_000, ...options },
      api as unknown as KubernetesApiClient,
      new K8sAuthMetrics({ metrics: false }),
    );
    made.push(verifier);
    return verifier;
  };
  afterEach(async () => {
    // Stops their signature verification threads.
    for (const verifier of made.splice(0)) await verifier.onModuleDestroy();
  });

  beforeEach(() => {
    api = new FakeApiServer();
    jest.useFakeTimers({ now: Date.now(), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  });
  afterEach(() => jest.useRealTimers());

  it('fetches discovery and keys once, then verifies from the cache', async () => {
    const verifier = make();
    for (let i = 0; i < 5; i++)
      expect((await verifier.verify(token(first.privateKey), ['secret-store'])).accepted).toBe(true);
    expect(api.asked).toEqual(['/.well-known/openid-configuration', '/openid/v1/jwks']);
  });

  it('shares one fetch between concurrent first requests', async () => {
    const verifier = make();
    api.hold = true;
    const results = Array.from({ length: 20 }, () => verifier.verify(token(first.privateKey), ['secret-store']));
    await Promise.resolve();
    api.release();
    expect((await Promise.all(results)).every((r) => r.accepted)).toBe(true);
    expect(api.jwksFetches).toBe(1);
  });

  it('tries every published key of the algorithm for a token without a kid, and refuses when none signed it', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
    api.keys = [other.publicKey, first.publicKey];
    const verifier = make();
    const withoutKid = (key: KeyObject) =>
      signJwt(key, JSON.parse(Buffer.from(token(key).split('.')[1], 'base64url').toString()), { kid: undefined });
    // The second key signed it: the first one's check fails, then the second is tried.
    expect((await verifier.verify(withoutKid(first.privateKey), ['secret-store'])).accepted).toBe(true);
    expect(await verifier.verify(withoutKid(stranger.privateKey), ['secret-store'])).toEqual({
      accepted: false,
      reason: 'invalid token',
    });
  });

  it('fetches again for an unknown kid, at most once per jwksMinRefreshIntervalMs', async () => {
    const verifier = make();
    await verifier.verify(token(first.privateKey), ['secret-store']);
    api.keys = [first.publicKey, second.publicKey]; // the API server starts signing with a new key

    jest.advanceTimersByTime(1_000);
    expect((await verifier.verify(token(second.privateKey), ['secret-store'])).accepted).toBe(true);
    expect(api.jwksFetches).toBe(2);

    // A kid nobody publishes: one more look after the interval, none before it.
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    expect(await verifier.verify(token(stranger), ['secret-store'])).toEqual({
      accepted: false,
      reason: 'invalid token',
    });
    expect(api.jwksFetches).toBe(2);
    jest.advanceTimersByTime(1_000);
    await verifier.verify(token(stranger), ['secret-store']);
    await verifier.verify(token(stranger), ['secret-store']);
    expect(api.jwksFetches).toBe(3);
  });

  it('keeps the same key objects across refreshes while the keys do not change, and takes a new one when they do', async () => {
    const checks = jest.spyOn(SignatureVerifier.prototype, 'verify');
    try {
      const verifier = make({ jwksRefreshIntervalMs: 60_000 });
      await verifier.verify(token(first.privateKey), ['secret-store']);
      jest.advanceTimersByTime(61_000);
      await verifier.verify(token(first.privateKey), ['secret-store']); // starts the background refresh
      await verifier.verify(token(first.privateKey), ['secret-store']); // with the refreshed keys
      expect(api.jwksFetches).toBe(2);
      const used = checks.mock.calls.map(([check]) => check.key);
      expect(used).toHaveLength(3);
      expect(used[2]).toBe(used[0]);

      api.keys = [generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey, second.publicKey];
      jest.advanceTimersByTime(61_000);
      await verifier.verify(token(second.privateKey), ['secret-store']);
      await verifier.verify(token(second.privateKey), ['secret-store']);
      expect(api.jwksFetches).toBe(3);
      expect(checks.mock.calls.at(-1)?.[0].key.equals(second.publicKey)).toBe(true);
    } finally {
      checks.mockRestore();
    }
  });

  it('answers unavailable when there are no keys and the API server cannot be reached', async () => {
    api.down = true;
    await expect(make().verify(token(first.privateKey), ['secret-store'])).rejects.toBeInstanceOf(
      ReviewUnavailableError,
    );
  });

  it('keeps verifying with the keys it has while the API server is down, and refreshes them in the background', async () => {
    const verifier = make({ jwksRefreshIntervalMs: 60_000 });
    await verifier.verify(token(first.privateKey), ['secret-store']);
    api.down = true;
    jest.advanceTimersByTime(61_000);
    expect((await verifier.verify(token(first.privateKey), ['secret-store'])).accepted).toBe(true);
    expect(api.jwksFetches).toBe(1); // the background refresh failed on discovery
    expect(api.asked.filter((p) => p.includes('openid-configuration'))).toHaveLength(2);

    // An unknown kid while the keys cannot be fetched: unavailable, not a verdict on the token.
    jest.advanceTimersByTime(1_000);
    await expect(verifier.verify(token(second.privateKey), ['secret-store'])).rejects.toBeInstanceOf(
      ReviewUnavailableError,
    );
    await expect(verifier.verify(token(second.privateKey), ['secret-store'])).rejects.toBeInstanceOf(
      ReviewUnavailableError,
    );

    api.down = false;
    api.keys = [second.publicKey]; // rotated: the first key is gone
    jest.advanceTimersByTime(61_000);
    // The background refresh is under way: a token with the new kid waits for it instead of being refused.
    expect((await verifier.verify(token(second.privateKey), ['secret-store'])).accepted).toBe(true);
    expect(await verifier.verify(token(first.privateKey), ['secret-store'])).toEqual({
      accepted: false,
      reason: 'invalid token',
    });
  });

  it('fetches the keys at start-up in the local modes only', async () => {
    make({ verification: 'tokenReview' }).onApplicationBootstrap();
    expect(api.asked).toEqual([]);
    make().onApplicationBootstrap();
    expect(api.asked).toEqual(['/.well-known/openid-configuration']);
  });

  it('never sends its credentials to a jwks_uri on another host', async () => {
    api.get = (async (path: string) => {
      api.asked.push(path);
      if (path === '/.well-known/openid-configuration') {
        return { issuer: ISSUER, jwks_uri: 'https://keys.example.com/jwks' };
      }
      return { keys: [{ ...first.publicKey.export({ format: 'jwk' }), kid: kubernetesKeyId(first.publicKey) }] };
    }) as FakeApiServer['get'];
    expect((await make().verify(token(first.privateKey), ['secret-store'])).accepted).toBe(true);
    expect(api.asked).toEqual(['/.well-known/openid-configuration', '/openid/v1/jwks']);
  });

  it.each([
    ['alg none', (t: string) => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${t.split('.')[1]}.AAAA`],
    ['HS256', (t: string) => `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${t.split('.')[1]}.AAAA`],
    ['a crit header', () => signJwt(first.privateKey, {}, { crit: ['exp'] })],
    ['a kid that is a number', () => signJwt(first.privateKey, {}, { kid: 7 as unknown as string })],
  ])('refuses %s without fetching any key', async (_what, forge) => {
    expect(await make().verify(forge(token(first.privateKey)), ['secret-store'])).toEqual({
      accepted: false,
      reason: 'invalid token',
    });
    expect(api.asked).toEqual([]);
  });

  describe('remembering accepted tokens', () => {
    let signatureChecks: jest.SpyInstance;
    beforeEach(() => (signatureChecks = jest.spyOn(SignatureVerifier.prototype, 'verify')));
    afterEach(() => signatureChecks.mockRestore());

    it('checks the signature of a token twice, then once per cacheTtlMs: a token seen once is not kept', async () => {
      const verifier = make({ cacheTtlMs: 60_000 });
      const sent = token(first.privateKey);
      for (let i = 0; i < 4; i++) expect((await verifier.verify(sent, ['secret-store'])).accepted).toBe(true);
      expect(signatureChecks).toHaveBeenCalledTimes(2);
      jest.advanceTimersByTime(60_001);
      for (let i = 0; i < 3; i++) expect((await verifier.verify(sent, ['secret-store'])).accepted).toBe(true);
      expect(signatureChecks).toHaveBeenCalledTimes(4);
    });

    it("never past the token's exp: the claims are checked again (here still within the clock skew)", async () => {
      const verifier = make({ cacheTtlMs: 60_000, clockSkewSeconds: 60 });
      const sent = token(first.privateKey, ['secret-store'], 20);
      for (let i = 0; i < 3; i++) expect((await verifier.verify(sent, ['secret-store'])).accepted).toBe(true);
      expect(signatureChecks).toHaveBeenCalledTimes(2);
      jest.advanceTimersByTime(21_000);
      expect((await verifier.verify(sent, ['secret-store'])).accepted).toBe(true);
      expect(signatureChecks).toHaveBeenCalledTimes(3);
      jest.advanceTimersByTime(60_000);
      expect(await verifier.verify(sent, ['secret-store'])).toEqual({ accepted: false, reason: 'invalid token' });
    });

    it('per audience list, and not when refused', async () => {
      const verifier = make();
      const sent = token(first.privateKey);
      expect((await verifier.verify(sent, ['secret-store'])).accepted).toBe(true);
      expect(await verifier.verify(sent, ['other'])).toEqual({ accepted: false, reason: 'wrong audience' });
      expect(await verifier.verify(sent, ['other'])).toEqual({ accepted: false, reason: 'wrong audience' });
      expect(signatureChecks).toHaveBeenCalledTimes(3);
    });

    it('with a cache of maxCacheEntries 0, not at all', async () => {
      const verifier = make({ maxCacheEntries: 0 });
      const sent = token(first.privateKey);
      for (let i = 0; i < 2; i++) expect((await verifier.verify(sent, ['secret-store'])).accepted).toBe(true);
      expect(signatureChecks).toHaveBeenCalledTimes(2);
    });
  });

  it('refuses to start in a local mode without an audience of its own', () => {
    expect(() => make({ audiences: 'api-server' })).toThrow(/needs this service's own audience/);
    expect(() => make({ verification: 'local+review', audiences: 'api-server' })).toThrow(/own audience/);
    expect(() => make({ verification: 'tokenReview', audiences: 'api-server' })).not.toThrow();
    expect(() => make({ verification: 'remote' as never })).toThrow(/verification must be/);
    expect(() => make({ clockSkewSeconds: -1 })).toThrow(/clockSkewSeconds/);
    expect(() => make({ verificationThread: 'yes' as never })).toThrow(/verificationThread must be true or false/);
  });
});
