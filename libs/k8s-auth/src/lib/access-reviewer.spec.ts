import { Logger } from '@nestjs/common';
import type { ResourceAttributes } from './access-check';
import { AccessReviewer, interpretAccessReview, subjectAccessReviewSpec } from './access-reviewer';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { type KubernetesApiClient, KubernetesApiError } from './kubernetes-api.client';
import { type CallerIdentity, ReviewUnavailableError } from './authentication.types';

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

type Answer = { allowed?: boolean; denied?: boolean; reason?: string; evaluationError?: string } | Error;

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
    return new AccessReviewer(options, api as unknown as KubernetesApiClient, new K8sAuthMetrics({ metrics: false }));
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

  it('never caches a failure, and reports it as ReviewUnavailableError', async () => {
    api.answer = () => new KubernetesApiError('unavailable', 'connect ECONNREFUSED');
    const r = reviewer();
    await expect(r.review(caller, readSecret('db'))).rejects.toThrow(ReviewUnavailableError);
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

  it('caches nothing with maxCacheEntries 0', async () => {
    const r = reviewer({ maxCacheEntries: 0 });
    await r.review(caller, readSecret('db'));
    await r.review(caller, readSecret('db'));
    expect(api.bodies).toHaveLength(2);
  });
});
