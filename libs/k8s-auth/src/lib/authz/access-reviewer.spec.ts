import { Logger } from '@nestjs/common';
import { generateKeyPairSync } from 'node:crypto';
import type { ResourceAttributes } from './access-check';
import { AccessReviewer, interpretAccessReview, subjectAccessReviewSpec } from './access-reviewer';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import type { K8sAuthModuleOptions } from '../module/k8s-auth-options.interface';
import { resolveOptions } from '../module/resolved-options';
import { type KubernetesApiClient, KubernetesApiError } from '../kube/kubernetes-api.client';
import { type CallerIdentity, AuthenticationUnavailableError } from '../authn/authentication.types';
import { createTokenAuthenticator } from '../authn/token-authenticator.provider';
import { signJwt } from '../../testing/jwt';

const caller: CallerIdentity = {
  username: 'system:serviceaccount:api:api',
  namespace: 'api',
  serviceAccount: 'api',
  uid: '1d7e7a3c-0000-4000-8000-000000000001',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:api', 'system:authenticated'],
  podName: 'api-7d9f',
  audiences: ['secret-store'],
  extra: {
    'authentication.kubernetes.io/pod-uid': ['p-uid'],
    'authentication.kubernetes.io/credential-id': ['JTI=abc'],
    'authentication.kubernetes.io/pod-name': ['api-7d9f'],
  },
};

const readSecret = (name: string): { resourceAttributes: ResourceAttributes } => ({
  resourceAttributes: {
    namespace: 'secret-store',
    verb: 'get',
    group: 'secret-store.example.com',
    resource: 'secrets',
    name,
  },
});

const { privateKey: tokenKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

type Answer =
  | { allowed?: boolean; denied?: boolean; reason?: string; evaluationError?: string; authenticated?: boolean }
  | Error;

/** Stands in for the API server: records each review and answers from a script. */
class FakeApi {
  readonly bodies: { apiVersion: string; kind: string; spec: Record<string, unknown> }[] = [];
  paths: string[] = [];
  answer: (spec: Record<string, unknown>) => Answer = () => ({ allowed: true });
  gate?: Promise<void>;

  async create<T>(path: string, body: { apiVersion: string; kind: string; spec: Record<string, unknown> }): Promise<T> {
    this.paths.push(path);
    this.bodies.push(body);
    if (this.gate) await this.gate;
    const answer = this.answer(body.spec);
    if (answer instanceof Error) throw answer;
    return { status: answer } as T;
  }
}

describe('subjectAccessReviewSpec', () => {
  it("carries the caller's user, uid, groups and extra (keys sorted) and the attributes", () => {
    const spec = subjectAccessReviewSpec(caller, readSecret('db'));
    expect(spec).toEqual({
      user: 'system:serviceaccount:api:api',
      uid: caller.uid,
      groups: caller.groups,
      extra: caller.extra,
      resourceAttributes: readSecret('db').resourceAttributes,
    });
    expect(Object.keys(spec.extra ?? {})).toEqual([
      'authentication.kubernetes.io/credential-id',
      'authentication.kubernetes.io/pod-name',
      'authentication.kubernetes.io/pod-uid',
    ]);
  });

  it('gives the same JSON for the same review whatever the order the attributes were written in', () => {
    const a = subjectAccessReviewSpec(caller, readSecret('db'));
    const b = subjectAccessReviewSpec(
      { ...caller, extra: Object.fromEntries(Object.entries(caller.extra ?? {}).reverse()) },
      {
        resourceAttributes: {
          name: 'db',
          resource: 'secrets',
          group: 'secret-store.example.com',
          verb: 'get',
          namespace: 'secret-store',
        },
      },
    );
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });

  it('leaves out uid, extra and unset attributes, and builds non-resource reviews', () => {
    const bare = { ...caller, uid: undefined, extra: undefined };
    expect(subjectAccessReviewSpec(bare, { resourceAttributes: { verb: 'list', resource: 'nodes' } })).toEqual({
      user: caller.username,
      groups: caller.groups,
      resourceAttributes: { verb: 'list', resource: 'nodes' },
    });
    expect(subjectAccessReviewSpec(bare, { nonResourceAttributes: { path: '/metrics', verb: 'get' } })).toEqual({
      user: caller.username,
      groups: caller.groups,
      nonResourceAttributes: { path: '/metrics', verb: 'get' },
    });
  });
});

describe('interpretAccessReview', () => {
  it.each([
    [{ allowed: true }, true],
    [{ allowed: true, reason: 'RBAC: allowed by RoleBinding' }, true],
    [{ allowed: false }, false],
    [{ allowed: false, denied: true }, false],
    [{ allowed: true, denied: true }, false],
    [{}, false],
    [{ allowed: 'true' as unknown as boolean }, false],
  ])('%j → allowed: %s', (status, allowed) => {
    expect(interpretAccessReview(status).allowed).toBe(allowed);
  });
});

// lru-cache keeps the `performance` object it found when loaded; here its clock follows Jest's fake Date.
const realPerformance = performance;

describe('AccessReviewer', () => {
  let api: FakeApi;
  let errors: jest.SpyInstance;
  let warnings: jest.SpyInstance;

  function reviewer(options: K8sAuthModuleOptions = {}): AccessReviewer {
    return new AccessReviewer(
      resolveOptions(options),
      api as unknown as KubernetesApiClient,
      new K8sAuthMetrics({ metrics: false }),
    );
  }

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_700_000_000_000 });
    jest.spyOn(realPerformance, 'now').mockImplementation(() => Date.now());
    api = new FakeApi();
    errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    warnings = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });

  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  it('posts a SubjectAccessReview and returns its decision', async () => {
    api.answer = () => ({ allowed: true, reason: 'RBAC: allowed by RoleBinding "x"' });
    await expect(reviewer().review(caller, readSecret('db'))).resolves.toEqual({
      allowed: true,
      reason: 'RBAC: allowed by RoleBinding "x"',
    });
    expect(api.paths).toEqual(['/apis/authorization.k8s.io/v1/subjectaccessreviews']);
    expect(api.bodies[0]).toEqual({
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: subjectAccessReviewSpec(caller, readSecret('db')),
    });
  });

  it('keeps an allowing decision for the allow TTL (default 5 min), gone just after it', async () => {
    const r = reviewer();
    await r.review(caller, readSecret('db'));
    jest.advanceTimersByTime(300_000);
    await r.review(caller, readSecret('db'));
    expect(api.bodies).toHaveLength(1);
    jest.advanceTimersByTime(1);
    await r.review(caller, readSecret('db'));
    expect(api.bodies).toHaveLength(2);
  });

  it('keeps a denying decision for the deny TTL (default 30 s), gone just after it', async () => {
    api.answer = () => ({ allowed: false });
    const r = reviewer();
    await expect(r.review(caller, readSecret('db'))).resolves.toEqual({ allowed: false });
    jest.advanceTimersByTime(30_000);
    await r.review(caller, readSecret('db'));
    expect(api.bodies).toHaveLength(1);
    jest.advanceTimersByTime(1);
    api.answer = () => ({ allowed: true });
    await expect(r.review(caller, readSecret('db'))).resolves.toEqual({ allowed: true });
    expect(api.bodies).toHaveLength(2);
  });

  it('takes both TTLs from the options', async () => {
    const r = reviewer({ accessCacheTtlMs: 1000, accessDenyCacheTtlMs: 200 });
    api.answer = (spec) => ({ allowed: (spec['resourceAttributes'] as { name: string }).name === 'yes' });
    await r.review(caller, readSecret('yes'));
    await r.review(caller, readSecret('no'));
    jest.advanceTimersByTime(201);
    await r.review(caller, readSecret('yes'));
    await r.review(caller, readSecret('no'));
    expect(api.bodies).toHaveLength(3);
    jest.advanceTimersByTime(800);
    await r.review(caller, readSecret('yes'));
    expect(api.bodies).toHaveLength(4);
  });

  it('keys the cache by the whole review: another name, group list, uid or extra is another review', async () => {
    const r = reviewer();
    await r.review(caller, readSecret('db'));
    await r.review(caller, readSecret('other'));
    await r.review({ ...caller, groups: [...caller.groups, 'extra-group'] }, readSecret('db'));
    await r.review({ ...caller, uid: 'another-uid' }, readSecret('db'));
    await r.review({ ...caller, extra: { ...caller.extra, x: ['1'] } }, readSecret('db'));
    await r.review({ ...caller, username: 'system:serviceaccount:api:other' }, readSecret('db'));
    await r.review(caller, { resourceAttributes: { ...readSecret('db').resourceAttributes, verb: 'delete' } });
    expect(api.bodies).toHaveLength(7);
    await r.review(caller, readSecret('db'));
    await r.review({ ...caller }, readSecret('db'));
    expect(api.bodies).toHaveLength(7);
  });

  it('shares one review among concurrent identical questions', async () => {
    let open!: () => void;
    api.gate = new Promise((r) => (open = r));
    const r = reviewer();
    const pending = Array.from({ length: 20 }, () => r.review(caller, readSecret('db')));
    const other = r.review(caller, readSecret('other'));
    open();
    const decisions = await Promise.all([...pending, other]);
    expect(decisions.every((d) => d.allowed)).toBe(true);
    expect(api.bodies).toHaveLength(2);
  });

  it('never caches a failure, and reports it as AuthenticationUnavailableError', async () => {
    api.answer = () => new KubernetesApiError('unavailable', 'connect ECONNREFUSED');
    const r = reviewer();
    await expect(r.review(caller, readSecret('db'))).rejects.toThrow(AuthenticationUnavailableError);
    api.answer = () => ({ allowed: true });
    await expect(r.review(caller, readSecret('db'))).resolves.toEqual({ allowed: true });
    expect(api.bodies).toHaveLength(2);
    expect(warnings).toHaveBeenCalledWith(expect.stringContaining('SubjectAccessReview failed: connect ECONNREFUSED'));
  });

  it('names system:auth-delegator when the API server forbids this service its reviews', async () => {
    api.answer = () =>
      new KubernetesApiError(
        'forbidden',
        'subjectaccessreviews.authorization.k8s.io is forbidden: User "system:serviceaccount:s:s" cannot create',
        403,
      );
    await expect(reviewer().review(caller, readSecret('db'))).rejects.toThrow(/system:auth-delegator/);
    expect(errors).toHaveBeenCalledWith(expect.stringMatching(/SubjectAccessReview.*system:auth-delegator/));
  });

  it('denies, caches and logs a review the API server could only partly evaluate', async () => {
    api.answer = () => ({ allowed: false, evaluationError: 'role.rbac.authorization.k8s.io "gone" not found' });
    const r = reviewer();
    await expect(r.review(caller, readSecret('db'))).resolves.toEqual({ allowed: false });
    await r.review(caller, readSecret('db'));
    expect(api.bodies).toHaveLength(1);
    expect(warnings).toHaveBeenCalledWith(
      expect.stringContaining('(get secret-store.example.com/secrets "db" in secret-store): role.rbac'),
    );
  });

  it('caches nothing with maxCacheEntries 0, and still shares one review among concurrent identical questions', async () => {
    const r = reviewer({ maxCacheEntries: 0 });
    await r.review(caller, readSecret('db'));
    await r.review(caller, readSecret('db'));
    expect(api.bodies).toHaveLength(2);
    let open!: () => void;
    api.gate = new Promise((resolve) => (open = resolve));
    const pending = Array.from({ length: 5 }, () => r.review(caller, readSecret('db')));
    open();
    await Promise.all(pending);
    expect(api.bodies).toHaveLength(3);
  });

  it('keeps an allowed decision through more denied reviews than the cache bound', async () => {
    api.answer = (spec) => ({ allowed: (spec['resourceAttributes'] as { name: string }).name === 'kept' });
    const r = reviewer({ maxCacheEntries: 5 });
    await expect(r.review(caller, readSecret('kept'))).resolves.toEqual({ allowed: true });
    for (let i = 0; i < 50; i++) {
      await expect(r.review(caller, readSecret(`denied-${i}`))).resolves.toEqual({ allowed: false });
    }
    expect(api.bodies).toHaveLength(51);
    await expect(r.review(caller, readSecret('kept'))).resolves.toEqual({ allowed: true });
    expect(api.bodies).toHaveLength(51);
    // The denials' own cache is bounded: the oldest went, the newest are kept.
    await r.review(caller, readSecret('denied-49'));
    expect(api.bodies).toHaveLength(51);
    await r.review(caller, readSecret('denied-0'));
    expect(api.bodies).toHaveLength(52);
  });

  it('keeps at most maxCacheEntries allowed decisions, least recently used out first', async () => {
    const r = reviewer({ maxCacheEntries: 2 });
    for (const name of ['a', 'b', 'a', 'c']) await r.review(caller, readSecret(name));
    expect(api.bodies).toHaveLength(3);
    await r.review(caller, readSecret('a'));
    expect(api.bodies).toHaveLength(3);
    await r.review(caller, readSecret('b'));
    expect(api.bodies).toHaveLength(4);
  });

  it('answers unavailable at once beyond maxAccessReviewsInFlight reviews, and takes new ones as those end', async () => {
    let open!: () => void;
    api.gate = new Promise((resolve) => (open = resolve));
    const r = reviewer({ maxAccessReviewsInFlight: 2 });
    const first = [r.review(caller, readSecret('a')), r.review(caller, readSecret('b'))];
    await expect(r.review(caller, readSecret('c'))).rejects.toThrow(
      new AuthenticationUnavailableError('2 SubjectAccessReviews are in flight already'),
    );
    // A question already being asked shares that review: no room needed.
    const again = r.review(caller, readSecret('a'));
    expect(api.bodies).toHaveLength(2);
    open();
    await expect(Promise.all([...first, again])).resolves.toHaveLength(3);
    await expect(r.review(caller, readSecret('c'))).resolves.toEqual({ allowed: true });
    expect(api.bodies).toHaveLength(3);
  });

  it('frees its place in flight when a review fails', async () => {
    api.answer = () => new KubernetesApiError('unavailable', 'connect ECONNREFUSED');
    const r = reviewer({ maxAccessReviewsInFlight: 1 });
    for (const name of ['a', 'b', 'c']) {
      await expect(r.review(caller, readSecret(name))).rejects.toThrow(/SubjectAccessReview failed/);
    }
    expect(api.bodies).toHaveLength(3);
  });

  it("bounds its reviews apart from the TokenReviews': either bound full leaves the other's room free", async () => {
    let open!: () => void;
    api.gate = new Promise((resolve) => (open = resolve));
    api.answer = () => ({ authenticated: false });
    const options = { maxReviewsInFlight: 1, maxAccessReviewsInFlight: 1 };
    const metrics = new K8sAuthMetrics({ metrics: false });
    const noCallers = {
      allChecked: Promise.resolve(),
      allowlisted: () => ({ namespaces: new Set<string>(), serviceAccounts: new Set<string>() }),
    };
    const api_ = api as unknown as KubernetesApiClient;
    const tokens = createTokenAuthenticator(resolveOptions(options), api_, metrics, noCallers);
    const r = reviewer(options);
    const token = (n: number) => signJwt(tokenKey, { sub: 'system:serviceaccount:api:api', n, exp: 4102444800 });

    const heldSar = r.review(caller, readSecret('a'));
    const heldTokenReview = tokens.authenticate(token(1), ['secret-store']);
    expect(api.paths).toEqual([
      '/apis/authorization.k8s.io/v1/subjectaccessreviews',
      '/apis/authentication.k8s.io/v1/tokenreviews',
    ]);
    // Each bound is full now, and only its own kind is turned away.
    await expect(r.review(caller, readSecret('b'))).rejects.toThrow(AuthenticationUnavailableError);
    await expect(tokens.authenticate(token(2), ['secret-store'])).rejects.toThrow(AuthenticationUnavailableError);
    open();
    await Promise.all([heldSar, heldTokenReview]);
  });

  it.each([
    [
      { maxAccessReviewsInFlight: 0 },
      'K8sAuthModule option maxAccessReviewsInFlight must be a positive integer, got 0',
    ],
    [
      { maxAccessReviewsInFlight: 1.5 },
      'K8sAuthModule option maxAccessReviewsInFlight must be a positive integer, got 1.5',
    ],
    [{ maxCacheEntries: -1 }, 'K8sAuthModule option maxCacheEntries must be a non-negative integer, got -1'],
    [{ accessCacheTtlMs: Number.NaN }, 'K8sAuthModule option accessCacheTtlMs must be a non-negative number, got NaN'],
    [{ accessDenyCacheTtlMs: -5 }, 'K8sAuthModule option accessDenyCacheTtlMs must be a non-negative number, got -5'],
  ])('refuses %j as it is built, naming the option', (options, message) => {
    expect(() => reviewer(options)).toThrow(new Error(message));
  });
});
