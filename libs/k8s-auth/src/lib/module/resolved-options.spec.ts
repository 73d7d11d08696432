import { Test } from '@nestjs/testing';
import { register as globalRegistry, Registry } from 'prom-client';
import { API_SERVER_AUDIENCE, DEFAULTS, TOKEN_VERIFICATIONS } from './k8s-auth.constants';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { K8sAuthModule } from './k8s-auth.module';
import { RESOLVED_OPTIONS, resolveOptions } from './resolved-options';

const refusal = (option: string, allowed: string, got: string) =>
  `K8sAuthModule option ${option} must be ${allowed}, got ${got}`;
const TIMER = "number of milliseconds, at most 2147483647 (Node's timer limit)";

/** Resolves `options` as given by plain JavaScript (or a config file), unchecked by TypeScript. */
const resolve = (options: Record<string, unknown>) => resolveOptions(options as K8sAuthModuleOptions);

describe('resolveOptions', () => {
  it('applies every default of DEFAULTS', () => {
    expect(resolveOptions({})).toEqual({
      kubeconfig: undefined,
      requestTimeoutMs: 5_000,
      retries: 2,
      audiences: undefined,
      tokenHeaders: ['authorization'],
      maxTokenBytes: 16_384,
      cacheTtlMs: 60_000,
      negativeCacheTtlMs: 5_000,
      maxReviewsInFlight: 64,
      maxAccessReviewsInFlight: 64,
      accessCacheTtlMs: 300_000,
      accessDenyCacheTtlMs: 30_000,
      maxCacheEntries: 10_000,
      verification: 'tokenReview',
      clockSkewSeconds: 60,
      jwksRefreshIntervalMs: 300_000,
      jwksMinRefreshIntervalMs: 1_000,
      watchStalenessMs: 2_000,
      retryAfterSeconds: 5,
      unguardedRoutes: 'error',
      tokenSources: new Map(),
      metrics: globalRegistry,
    });
  });

  it('returns a frozen object', () => {
    const resolved = resolveOptions({ audiences: ['a'], tokenHeaders: ['x-client-id'] });
    expect(Object.isFrozen(resolved)).toBe(true);
    expect(Object.isFrozen(resolved.audiences)).toBe(true);
    expect(Object.isFrozen(resolved.tokenHeaders)).toBe(true);
  });

  // [option, accepted values, refused values, what the message says is allowed]
  const numeric: [keyof K8sAuthModuleOptions & keyof typeof DEFAULTS, unknown[], unknown[], string][] = [
    ['requestTimeoutMs', [1, 0.5, 2_147_483_647], [0, -1, 2_147_483_648, Number.NaN, '5000'], `a positive ${TIMER}`],
    ['retries', [0, 5], [-1, 1.5, Number.POSITIVE_INFINITY], 'a non-negative integer'],
    ['maxTokenBytes', [1, 1_000_000], [0, -1, 1.5, Number.NaN], 'a positive integer'],
    ['cacheTtlMs', [0, 1.5, 3_600_000], [-1, Number.NaN, Number.POSITIVE_INFINITY], 'a non-negative number'],
    ['negativeCacheTtlMs', [0, 1_000], [-5, Number.NaN], 'a non-negative number'],
    ['maxReviewsInFlight', [1, 500], [0, -1, 1.5], 'a positive integer'],
    ['maxAccessReviewsInFlight', [1, 500], [0, 1.5], 'a positive integer'],
    ['accessCacheTtlMs', [0, 60_000], [-1, Number.NaN], 'a non-negative number'],
    ['accessDenyCacheTtlMs', [0, 60_000], [-5], 'a non-negative number'],
    ['maxCacheEntries', [0, 5], [-1, 1.5], 'a non-negative integer'],
    ['clockSkewSeconds', [0, 0.5, 300], [-1, Number.NaN], 'a non-negative number'],
    ['jwksRefreshIntervalMs', [0, 60_000], [-1, Number.NaN], 'a non-negative number'],
    ['jwksMinRefreshIntervalMs', [0, 1_500], [-1, 2_147_483_648], `a non-negative ${TIMER}`],
    ['watchStalenessMs', [1, 1_000], [0, -1, 2_147_483_648], `a positive ${TIMER}`],
    ['retryAfterSeconds', [0, 30], [-1, 1.5, '5'], 'a non-negative integer'],
  ];

  describe.each(numeric)('%s', (option, accepted, refused, allowed) => {
    it(`defaults to ${String(DEFAULTS[option])}`, () => {
      expect(resolveOptions({})[option]).toBe(DEFAULTS[option]);
    });

    it.each(accepted)('accepts %p', (value) => {
      expect(resolve({ [option]: value })[option]).toBe(value);
    });

    it.each(refused)('refuses %p, naming the option and the value', (value) => {
      const got = typeof value === 'string' ? JSON.stringify(value) : String(value);
      expect(() => resolve({ [option]: value })).toThrow(refusal(option, allowed, got));
    });
  });

  it('takes null for unset, as undefined', () => {
    const nulls = { maxCacheEntries: null, kubeconfig: null, audiences: null, metrics: null, tokenSources: null };
    expect(resolve(nulls)).toEqual(resolveOptions({}));
    const entry = { file: '/t', serviceAccount: null, audience: null, refreshIntervalMs: null };
    expect(resolve({ tokenSources: { x: entry } }).tokenSources.get('x')).toMatchObject({ kind: 'file', file: '/t' });
  });

  describe('verification', () => {
    it.each(TOKEN_VERIFICATIONS)('accepts %p', (verification) => {
      expect(resolveOptions({ verification, audiences: ['a'] }).verification).toBe(verification);
    });

    it('refuses any other value, listing the modes', () => {
      expect(() => resolve({ verification: 'remote' })).toThrow(
        refusal('verification', 'one of "tokenReview", "local", "local+review", "local+watch"', '"remote"'),
      );
    });

    it.each(TOKEN_VERIFICATIONS.filter((v) => v !== 'tokenReview'))(
      "refuses %p with audiences 'api-server', saying why",
      (verification) => {
        expect(() => resolveOptions({ verification, audiences: API_SERVER_AUDIENCE })).toThrow(
          refusal(
            'audiences',
            `this service's own audience with verification "${verification}", which checks the token's audience ` +
              'itself (tokens meant for the API server are not verified locally)',
            '"api-server"',
          ),
        );
      },
    );
  });

  describe('unguardedRoutes', () => {
    it.each(['error', 'warn'])('accepts %p', (action) => {
      expect(resolve({ unguardedRoutes: action }).unguardedRoutes).toBe(action);
    });

    it.each([
      ['ignore', '"ignore"'],
      ['Warn', '"Warn"'],
      [false, 'false'],
      [0, '0'],
    ])('refuses %p, listing what it accepts', (value, got) => {
      expect(() => resolve({ unguardedRoutes: value })).toThrow(
        refusal('unguardedRoutes', 'one of "error", "warn"', got),
      );
    });

    it('counts null as unset', () => {
      expect(resolve({ unguardedRoutes: null }).unguardedRoutes).toBe('error');
    });
  });

  describe('audiences', () => {
    it('accepts a list, copied, and api-server', () => {
      const audiences = ['secret-store', 'store'];
      const resolved = resolveOptions({ audiences });
      expect(resolved.audiences).toEqual(audiences);
      expect(resolved.audiences).not.toBe(audiences);
      expect(resolveOptions({ audiences: API_SERVER_AUDIENCE }).audiences).toBe('api-server');
    });

    it.each<[unknown, string]>([
      [[], '[]'],
      [['a', ''], '["a",""]'],
      [['a', 1], '["a",1]'],
      ['secret-store', '"secret-store"'],
    ])('refuses %p, saying how to do without', (audiences, got) => {
      expect(() => resolve({ audiences })).toThrow(
        refusal(
          'audiences',
          'a non-empty list of audiences (non-empty strings) or "api-server"; leave it out to name the audience of ' +
            'each guarded route with @Audience()',
          got,
        ),
      );
    });
  });

  describe('tokenHeaders', () => {
    it('accepts the known headers, each once', () => {
      expect(resolveOptions({ tokenHeaders: ['x-client-id'] }).tokenHeaders).toEqual(['x-client-id']);
      expect(resolveOptions({ tokenHeaders: ['x-client-id', 'authorization', 'x-client-id'] }).tokenHeaders).toEqual([
        'x-client-id',
        'authorization',
      ]);
    });

    it.each<[unknown, string]>([
      [[], '[]'],
      [['Authorization'], '["Authorization"]'],
      [['authorization', 'cookie'], '["authorization","cookie"]'],
      ['authorization', '"authorization"'],
    ])('refuses %p', (tokenHeaders, got) => {
      expect(() => resolve({ tokenHeaders })).toThrow(
        refusal('tokenHeaders', 'a non-empty list of "authorization" and/or "x-client-id" (in lower case)', got),
      );
    });
  });

  describe('kubeconfig', () => {
    it('accepts a path; an empty one counts as unset', () => {
      expect(resolveOptions({ kubeconfig: '/etc/kube.conf' }).kubeconfig).toBe('/etc/kube.conf');
      expect(resolveOptions({ kubeconfig: '' }).kubeconfig).toBeUndefined();
    });

    it('refuses anything but a string', () => {
      expect(() => resolve({ kubeconfig: 42 })).toThrow(refusal('kubeconfig', 'the path of a kubeconfig file', '42'));
    });
  });

  describe('metrics', () => {
    it('accepts a Registry, or false', () => {
      const registry = new Registry();
      expect(resolveOptions({ metrics: registry }).metrics).toBe(registry);
      expect(resolveOptions({ metrics: false }).metrics).toBe(false);
    });

    it.each<[unknown, string]>([
      [true, 'true'],
      [{}, 'an object'],
    ])('refuses %p', (metrics, got) => {
      expect(() => resolve({ metrics })).toThrow(
        refusal('metrics', 'a prom-client Registry, or false for no metrics', got),
      );
    });
  });

  it('refuses options that are not an object', () => {
    expect(() => resolveOptions(undefined as unknown as K8sAuthModuleOptions)).toThrow(
      "K8sAuthModule options must be an object (forRoot's argument, or what forRootAsync's useFactory returns), " +
        'got undefined',
    );
  });
});

describe('resolveOptions: tokenSources', () => {
  const sources = (tokenSources: unknown) => resolve({ tokenSources }).tokenSources;

  it('resolves a projected file with its defaults', () => {
    expect(sources({ store: {} }).get('store')).toEqual({
      kind: 'file',
      file: '/var/run/secrets/tokens/store',
      refreshIntervalMs: 300_000,
      waitForFileMs: 0,
    });
    expect(sources({ store: { file: '/t', refreshIntervalMs: 1_000, waitForFileMs: 10_000 } }).get('store')).toEqual({
      kind: 'file',
      file: '/t',
      refreshIntervalMs: 1_000,
      waitForFileMs: 10_000,
    });
  });

  it('resolves a TokenRequest source with its defaults', () => {
    expect(sources({ store: { serviceAccount: 'api:api', audience: 'secret-store' } }).get('store')).toEqual({
      kind: 'tokenRequest',
      namespace: 'api',
      serviceAccount: 'api',
      audience: 'secret-store',
      expirationSeconds: 600,
      refreshIntervalMs: 300_000,
    });
    const long = { serviceAccount: 'reports:reports.v2', audience: 'a', expirationSeconds: 2 ** 32 };
    expect(sources({ store: long }).get('store')).toMatchObject({
      serviceAccount: 'reports.v2',
      expirationSeconds: 2 ** 32,
    });
  });

  const where = (name: string, key?: string) => `tokenSources[${JSON.stringify(name)}]${key ? `.${key}` : ''}`;

  it.each<[string, unknown, string, string, string]>([
    ['x', { refreshIntervalMs: 0 }, 'refreshIntervalMs', `a positive ${TIMER}`, '0'],
    ['x', { refreshIntervalMs: 2_147_483_648 }, 'refreshIntervalMs', `a positive ${TIMER}`, '2147483648'],
    ['x', { waitForFileMs: -1 }, 'waitForFileMs', 'a non-negative number', '-1'],
    ['x', { file: '' }, 'file', 'a non-empty string (a path)', '""'],
    ['a/b', {}, 'file', 'given when the name is not a plain file name in /var/run/secrets/tokens', 'undefined'],
    ['..', {}, 'file', 'given when the name is not a plain file name in /var/run/secrets/tokens', 'undefined'],
    [
      'x',
      { audience: 'store' },
      'audience',
      'left out of a projected file source (add serviceAccount for a TokenRequest)',
      '"store"',
    ],
    [
      'x',
      { serviceAccount: 'api:api', audience: 'a', file: '/t' },
      'file',
      'left out of a TokenRequest source (an entry with serviceAccount)',
      '"/t"',
    ],
    ['x', { serviceAccount: 'api:api' }, 'audience', "a non-empty string (the callee's audience)", 'undefined'],
    [
      'x',
      { serviceAccount: 'api:api', audience: 'a', expirationSeconds: 60 },
      'expirationSeconds',
      "an integer from 600 to 4294967296 (the API server's bounds)",
      '60',
    ],
  ])('refuses %p: %j', (name, entry, key, allowed, got) => {
    expect(() => sources({ [name]: entry })).toThrow(refusal(where(name, key), allowed, got));
  });

  it.each(['api', 'api:', ':api', 'api:api:x', 'API:api', 'api:a b'])(
    'refuses serviceAccount %p, which is not namespace:name',
    (serviceAccount) => {
      expect(() => sources({ x: { serviceAccount, audience: 'a' } })).toThrow(
        refusal(
          where('x', 'serviceAccount'),
          '"namespace:name", a namespace and a ServiceAccount name as Kubernetes spells them',
          JSON.stringify(serviceAccount),
        ),
      );
    },
  );

  it('refuses an entry or a list that is not an object', () => {
    expect(() => sources({ x: 'file' })).toThrow(
      refusal(
        where('x'),
        'a projected file ({ file?, refreshIntervalMs?, waitForFileMs? }) or a TokenRequest source ' +
          '({ serviceAccount, audience, expirationSeconds? })',
        '"file"',
      ),
    );
    expect(() => sources([{}])).toThrow(refusal('tokenSources', 'an object of token sources by name', '[{}]'));
  });
});

describe('K8sAuthModule with options out of range', () => {
  it('stops start-up (forRoot) with the message of resolveOptions', async () => {
    await expect(
      Test.createTestingModule({
        imports: [K8sAuthModule.forRoot({ metrics: false, requestTimeoutMs: -1 })],
      }).compile(),
    ).rejects.toThrow(refusal('requestTimeoutMs', `a positive ${TIMER}`, '-1'));
  });

  it('stops start-up (forRootAsync) with the message of resolveOptions', async () => {
    const module = K8sAuthModule.forRootAsync({ useFactory: () => ({ metrics: false, retryAfterSeconds: 1.5 }) });
    await expect(Test.createTestingModule({ imports: [module] }).compile()).rejects.toThrow(
      refusal('retryAfterSeconds', 'a non-negative integer', '1.5'),
    );
  });

  it('provides the resolved options to the classes that read them', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [K8sAuthModule.forRoot({ metrics: false, retries: 0 })],
    }).compile();
    expect(moduleRef.get(RESOLVED_OPTIONS)).toMatchObject({ retries: 0, requestTimeoutMs: 5_000, metrics: false });
    await moduleRef.close();
  });
});
