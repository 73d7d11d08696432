import { Logger } from '@nestjs/common';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { Registry } from 'prom-client';
import { kubernetesKeyId } from '../../testing/jwt';
import { AuthenticationUnavailableError } from './authentication.types';
import { DISCOVERY_PATH, FakeApiServer, ISSUER, JWKS_PATH, jwkOf } from './fake-api-server.spec-support';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import { DEFAULTS } from '../module/k8s-auth.constants';
import { type IssuerKeys, SigningKeys, type SigningKeysOptions } from './signing-keys';

// The key cache and its refresh rules, over a fake API server; the real one is in
// local-jwt.authenticator.integration.spec.ts.

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const ec521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });

const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'pem' }).toString();
const kids = (held: IssuerKeys) => held.keys.map((k) => k.kid);
const holds = (key: KeyObject) => (held: IssuerKeys) => held.keys.some((k) => k.kid === kubernetesKeyId(key));
/** How LocalJwtAuthenticator names the key it looks for. */
const keyId = (key: KeyObject) => `${key.asymmetricKeyType === 'rsa' ? 'RS256' : 'ES256'} ${kubernetesKeyId(key)}`;

describe('SigningKeys', () => {
  let api: FakeApiServer;
  let registry: Registry;
  let warnings: jest.SpyInstance;

  const make = (options: Partial<SigningKeysOptions> = {}) =>
    new SigningKeys(api.client, new K8sAuthMetrics({ metrics: registry }), {
      refreshIntervalMs: 60_000,
      minRefreshIntervalMs: 1_000,
      ...options,
    });

  /** `k8s_auth_jwks_fetches_total` of `outcome`. */
  const counted = async (outcome: 'success' | 'error') => {
    const metric = await registry.getSingleMetric('k8s_auth_jwks_fetches_total')?.get();
    return metric?.values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;
  };

  beforeEach(() => {
    api = new FakeApiServer([rsa.publicKey]);
    registry = new Registry();
    warnings = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.useFakeTimers({ now: Date.now(), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  });
  afterEach(() => {
    jest.useRealTimers();
    warnings.mockRestore();
  });

  it('fetches the discovery document, then the JWKS it names, once; later calls get the keys held', async () => {
    const keys = make();
    const held = await keys.get();
    for (let i = 0; i < 5; i++) expect(await keys.get()).toBe(held);
    expect(held).toEqual({
      issuer: ISSUER,
      keys: [{ kid: kubernetesKeyId(rsa.publicKey), alg: 'RS256', pem: spki(rsa.publicKey) }],
    });
    // The API server serves its JWKS only as application/jwk-set+json.
    expect(api.asked).toEqual([
      { path: DISCOVERY_PATH, accept: undefined },
      { path: JWKS_PATH, accept: expect.stringMatching(/^application\/jwk-set\+json\b/) },
    ]);
    expect(await counted('success')).toBe(1);
  });

  it('shares one fetch between concurrent callers', async () => {
    const keys = make();
    api.hold = true;
    const all = Array.from({ length: 20 }, () => keys.get());
    await Promise.resolve();
    api.release();
    const held = await Promise.all(all);
    expect(held.every((h) => h === held[0])).toBe(true);
    expect(api.fetches).toBe(1);
  });

  it('waits for the next fetch for a key not held, no sooner than minRefreshIntervalMs after the last, and finds a key rotated in', async () => {
    const keys = make();
    await keys.get();
    api.keys = [rsa.publicKey, ec256.publicKey]; // the API server starts signing with a new key

    jest.advanceTimersByTime(400);
    let found: IssuerKeys | undefined;
    void keys.get(holds(ec256.publicKey), keyId(ec256.publicKey)).then((held) => (found = held));
    const alsoWaiting = keys.get(holds(ec256.publicKey), keyId(ec256.publicKey));
    await jest.advanceTimersByTimeAsync(599);
    expect([found, api.fetches]).toEqual([undefined, 1]);
    await jest.advanceTimersByTimeAsync(1);
    expect(kids(await alsoWaiting)).toContain(kubernetesKeyId(ec256.publicKey));
    expect(found).toBe(await alsoWaiting);
    expect(api.fetches).toBe(2); // one fetch for both
  });

  it('refuses a key id a fetch did not find at once for a while, without fetching again; a new key id still looks', async () => {
    const keys = make();
    const first = await keys.get();
    jest.advanceTimersByTime(1_000);
    const nowhere = () => false;
    expect(await keys.get(nowhere, 'RS256 junk')).toEqual(first); // fetched at once: the interval was over
    expect(api.fetches).toBe(2);
    for (let i = 0; i < 9; i++) {
      jest.advanceTimersByTime(1_000);
      expect(await keys.get(nowhere, 'RS256 junk')).toEqual(first);
    }
    expect(api.fetches).toBe(2);

    // Another key id, or the same one once it is forgotten: one more look each.
    await keys.get(nowhere, 'RS256 other junk');
    expect(api.fetches).toBe(3);
    jest.advanceTimersByTime(2_000);
    await keys.get(nowhere, 'RS256 junk');
    expect(api.fetches).toBe(4);

    // A key any fetch brings in is taken, though its key id was not found before.
    api.keys = [rsa.publicKey, ec256.publicKey];
    jest.advanceTimersByTime(1_000);
    await keys.get(nowhere, 'RS256 fresh junk');
    expect(keys.inHand(holds(ec256.publicKey))).toBeDefined();
  });

  it('under a flood of unknown key ids: one fetch per interval, and a key rotated in is taken on its first token', async () => {
    const interval = DEFAULTS.jwksMinRefreshIntervalMs;
    const keys = make({ minRefreshIntervalMs: interval });
    await keys.get();
    const floodMs = 30_000;
    const tickMs = 10;
    const retryMs = 100;
    let junk = 0;
    let publishedAt: number | undefined;
    let acceptedAt: number | undefined;
    const tries: boolean[] = []; // whether each try of the new key's token found it
    let trying = false;
    let lastTry = Number.NEGATIVE_INFINITY;
    const started = Date.now();
    const fetchesAtStart = api.fetches;
    const jwksReads = () => api.paths.filter((path) => path === JWKS_PATH).length;

    for (let t = 0; t < floodMs; t += tickMs) {
      // Five new junk key ids per tick (500 a second), none ever answered: each would be a fetch without a bound.
      for (let i = 0; i < 5; i++) void keys.get(() => false, `RS256 junk-${junk++}`).catch(() => undefined);
      // The new key is published just after a fetch made for the flood has read the JWKS: the worst moment.
      if (publishedAt === undefined && jwksReads() === fetchesAtStart + 1) {
        api.keys = [rsa.publicKey, ec256.publicKey];
        publishedAt = Date.now();
      }
      // A caller with a token of the new key tries every 100 ms until it is accepted.
      if (publishedAt !== undefined && acceptedAt === undefined && !trying && Date.now() - lastTry >= retryMs) {
        trying = true;
        lastTry = Date.now();
        void keys.get(holds(ec256.publicKey), keyId(ec256.publicKey)).then((held) => {
          trying = false;
          const found = holds(ec256.publicKey)(held);
          tries.push(found);
          if (found) acceptedAt = Date.now();
        });
      }
      await jest.advanceTimersByTimeAsync(tickMs);
    }

    const elapsed = Date.now() - started;
    const fetches = api.fetches - fetchesAtStart;
    console.log(
      `unknown-kid flood (${junk} junk key ids in ${elapsed / 1000} s of fake time, interval ${interval} ms): ` +
        `the new key was taken ${acceptedAt === undefined ? 'never' : `${(acceptedAt - (publishedAt ?? 0)) / 1000} s`} ` +
        `after it was published, on try ${tries.length}; ${fetches} fetches`,
    );
    // Not refused first: the first token of the new key waits for the next fetch, which finds it.
    expect(tries).toEqual([true]);
    expect((acceptedAt ?? Infinity) - (publishedAt ?? 0)).toBeLessThanOrEqual(interval);
    expect(fetches).toBeLessThanOrEqual(Math.ceil(elapsed / interval) + 1);
  });

  it('refreshes the keys in the background every refreshIntervalMs, keeping them while the API server is down', async () => {
    const keys = make();
    const first = await keys.get();

    api.down = true;
    jest.advanceTimersByTime(60_000);
    expect(await keys.get()).toBe(first); // starts a refresh that fails
    await expect(keys.fetch()).rejects.toBeInstanceOf(AuthenticationUnavailableError); // joins it
    expect(await keys.get()).toBe(first);
    expect(api.fetches).toBe(2);
    expect(await counted('error')).toBe(1);
    expect(warnings).toHaveBeenCalledWith(expect.stringMatching(/verifying with the keys fetched before/));

    // A key not held, while the keys cannot be fetched: it may be one just added, so unavailable, not refused.
    await expect(keys.get(holds(ec256.publicKey))).rejects.toBeInstanceOf(AuthenticationUnavailableError);

    api.down = false;
    api.keys = [ec256.publicKey]; // rotated: the first key is gone
    api.hold = true;
    jest.advanceTimersByTime(60_000);
    // Callers do not wait for the background refresh.
    expect(await keys.get()).toBe(first);
    api.release();
    await keys.fetch();
    expect(kids(await keys.get())).toEqual([kubernetesKeyId(ec256.publicKey)]);
    expect(api.fetches).toBe(3);
  });

  it('answers unavailable while no keys are held and the API server cannot be reached', async () => {
    api.down = true;
    await expect(make().get()).rejects.toThrow(
      new AuthenticationUnavailableError(
        "Cannot fetch the API server's token signing keys (/.well-known/openid-configuration: connect ECONNREFUSED)",
      ),
    );
    expect(await counted('error')).toBe(1);
  });

  it('while no keys are held, fetches at most once per minRefreshIntervalMs however many callers ask', async () => {
    // The old verifier fetched for every request while it held no keys: a flood of requests became a flood of
    // discovery requests to the API server.
    const keys = make({ minRefreshIntervalMs: 10_000 });
    api.down = true;
    for (let i = 0; i < 20; i++) {
      await expect(keys.get()).rejects.toBeInstanceOf(AuthenticationUnavailableError);
      jest.advanceTimersByTime(400); // 20 requests within 8 s
    }
    expect(api.fetches).toBe(1);

    jest.advanceTimersByTime(2_000);
    await expect(Promise.all([keys.get(), keys.get()])).rejects.toBeInstanceOf(AuthenticationUnavailableError);
    expect(api.fetches).toBe(2);

    // Back, but not asked again before the interval is over.
    api.down = false;
    for (let i = 0; i < 20; i++) await expect(keys.get()).rejects.toBeInstanceOf(AuthenticationUnavailableError);
    expect(api.fetches).toBe(2);
    jest.advanceTimersByTime(10_000);
    expect(kids(await keys.get())).toEqual([kubernetesKeyId(rsa.publicKey)]);
    expect(api.fetches).toBe(3);
    expect([await counted('error'), await counted('success')]).toEqual([2, 1]);
  });

  it('counts the start-up fetch as the attempt of its interval', async () => {
    const keys = make({ minRefreshIntervalMs: 10_000 });
    api.down = true;
    await expect(keys.fetch()).rejects.toBeInstanceOf(AuthenticationUnavailableError);
    for (let i = 0; i < 20; i++) await expect(keys.get()).rejects.toBeInstanceOf(AuthenticationUnavailableError);
    expect(api.fetches).toBe(1);
  });

  describe('never sends its credentials to another host', () => {
    it.each([
      ['a URL on another host', 'https://keys.example.com/openid/v1/jwks'],
      ['a URL on another port', 'https://127.0.0.1:6444/openid/v1/jwks'],
      ['a plain HTTP URL', 'http://127.0.0.1:6443/openid/v1/jwks'],
      ['not a URL', 'keys'],
      ['not a string', 7],
    ])('asks the API server for its own JWKS when jwks_uri is %s', async (_what, jwksUri) => {
      api.discovery = { issuer: ISSUER, jwks_uri: jwksUri };
      expect((await make().get()).keys).toHaveLength(1);
      expect(api.paths).toEqual([DISCOVERY_PATH, JWKS_PATH]);
    });

    it('follows a jwks_uri on the API server itself', async () => {
      api.discovery = { issuer: ISSUER, jwks_uri: `${ISSUER}/keys?v=2` };
      api.jwksPath = '/keys?v=2';
      expect((await make().get()).keys).toHaveLength(1);
      expect(api.paths).toEqual([DISCOVERY_PATH, '/keys?v=2']);
    });
  });

  it.each([
    ['a discovery document without an issuer', () => (api.discovery = { jwks_uri: `${ISSUER}${JWKS_PATH}` })],
    ['a JWKS without a "keys" list', () => (api.jwksDocument = { keys: 'none' })],
    ['a JWKS without a usable key', () => (api.keys = [jwkOf(rsa.publicKey, { use: 'enc' })])],
  ])('answers unavailable for %s', async (_what, spoil) => {
    spoil();
    await expect(make().get()).rejects.toBeInstanceOf(AuthenticationUnavailableError);
  });

  describe('reading the JWKS', () => {
    it('takes RSA keys and EC keys on P-256, P-384 and P-521, with their kid and algorithm', async () => {
      api.keys = [
        jwkOf(rsa.publicKey, { alg: 'RS256' }),
        jwkOf(ec256.publicKey, { alg: 'ES256' }),
        ec384.publicKey,
        jwkOf(ec521.publicKey, { use: undefined }),
        jwkOf(ec256.publicKey, { kid: undefined }),
      ];
      const { keys } = await make().get();
      expect(keys.map((k) => [k.alg, k.kid])).toEqual([
        ['RS256', kubernetesKeyId(rsa.publicKey)],
        ['ES256', kubernetesKeyId(ec256.publicKey)],
        ['ES384', kubernetesKeyId(ec384.publicKey)],
        ['ES512', kubernetesKeyId(ec521.publicKey)],
        ['ES256', undefined],
      ]);
      expect(keys[4]).not.toHaveProperty('kid');
      expect(keys.map((k) => k.pem)).toEqual([rsa, ec256, ec384, ec521, ec256].map((pair) => spki(pair.publicKey)));
    });

    it.each<[string, () => unknown]>([
      ['a key for encryption', () => jwkOf(rsa.publicKey, { use: 'enc' })],
      ['a symmetric key', () => ({ kty: 'oct', k: 'c2VjcmV0', alg: 'HS256', kid: 'hmac' })],
      ['a key on secp256k1', () => jwkOf(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey)],
      ['an Ed25519 key', () => jwkOf(generateKeyPairSync('ed25519').publicKey)],
      ['a 1024-bit RSA key', () => jwkOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey)],
      ['an RSA key with alg none', () => jwkOf(rsa.publicKey, { alg: 'none' })],
      ['an RSA key with alg HS256', () => jwkOf(rsa.publicKey, { alg: 'HS256' })],
      ['an RSA key with alg PS256', () => jwkOf(rsa.publicKey, { alg: 'PS256' })],
      ['a P-256 key with alg ES384', () => jwkOf(ec256.publicKey, { alg: 'ES384' })],
      ['an EC key with alg RS256', () => jwkOf(ec384.publicKey, { alg: 'RS256' })],
      ['a kid that is not a string', () => jwkOf(rsa.publicKey, { kid: 7 })],
      ['an RSA key without its modulus', () => ({ kty: 'RSA', e: 'AQAB', kid: 'broken' })],
      ['an EC key off its curve', () => ({ ...jwkOf(ec256.publicKey), y: jwkOf(ec384.publicKey)['y'] })],
      ['an entry that is not an object', () => 'nonsense'],
      ['an entry that is null', () => null],
    ])('skips %s, and keeps the other keys', async (_what, entry) => {
      api.keys = [entry() as Record<string, unknown>, ec521.publicKey];
      const { keys } = await make().get();
      expect(keys.map((k) => k.kid)).toEqual([kubernetesKeyId(ec521.publicKey)]);
      expect(warnings).toHaveBeenCalledWith('skipped 1 JWKS key(s) that are not RS256/ES256/384/512');
    });

    it('keeps only the public part of a key published with its private part', async () => {
      api.keys = [{ ...rsa.privateKey.export({ format: 'jwk' }), kid: 'leaked' }];
      const { keys } = await make().get();
      expect(keys).toEqual([{ kid: 'leaked', alg: 'RS256', pem: spki(rsa.publicKey) }]);
      expect(keys[0].pem).not.toMatch(/PRIVATE/);
    });
  });
});
