import { Logger } from '@nestjs/common';
import { generateKeyPairSync } from 'node:crypto';
import { signJwt } from '../../testing/jwt';
import { AuthenticationUnavailableError } from './authentication.types';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import { type KubernetesApiClient, KubernetesApiError } from '../kube/kubernetes-api.client';
import {
  interpretTokenReview,
  TokenReviewAuthenticator,
  parseServiceAccountUsername,
} from './token-review.authenticator';

// The strategy's rules with the API server replaced by a fake; the real TokenReview is in the guard's integration spec.

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const now = () => Math.floor(Date.now() / 1000);
const jwt = (claims: Record<string, unknown>) =>
  signJwt(privateKey, { sub: 'system:serviceaccount:api:api', ...claims });
const USER = {
  username: 'system:serviceaccount:api:api',
  uid: 'sa-uid',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:api'],
  extra: { 'authentication.kubernetes.io/pod-name': ['api-0'], 'authentication.kubernetes.io/pod-uid': ['pod-uid'] },
};

class FakeApi {
  readonly asked: unknown[] = [];
  answer: () => Promise<unknown> = async () => ({
    status: { authenticated: true, user: USER, audiences: ['secret-store'] },
  });

  create<T>(_path: string, body: unknown): Promise<T> {
    this.asked.push(body);
    return this.answer() as Promise<T>;
  }
}

describe('TokenReviewAuthenticator', () => {
  let api: FakeApi;
  const strategy = (maxInFlight = 64) =>
    new TokenReviewAuthenticator(api as unknown as KubernetesApiClient, new K8sAuthMetrics({ metrics: false }), {
      maxInFlight,
      clockSkewMs: 60_000,
    });

  beforeEach(() => {
    api = new FakeApi();
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
  });

  afterEach(() => jest.restoreAllMocks());

  it("asks with the route's audiences and answers with the identity, until the token's exp", async () => {
    const exp = now() + 600;
    const result = await strategy().authenticate(jwt({ exp }), ['secret-store']);
    expect(api.asked).toEqual([
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token: expect.any(String), audiences: ['secret-store'] },
      },
    ]);
    expect(result).toMatchObject({
      accepted: true,
      expiresAt: exp * 1000,
      caller: { namespace: 'api', serviceAccount: 'api', podName: 'api-0', podUid: 'pod-uid' },
    });
  });

  it.each([
    ['not a JWT', 'a.b.c'],
    ['expired by its own exp beyond the clock skew', jwt({ exp: now() - 61 })],
  ])('refuses a token that is %s without asking', async (_, token) => {
    await expect(strategy().authenticate(token, ['secret-store'])).resolves.toEqual({
      accepted: false,
      reason: 'invalid token',
    });
    expect(api.asked).toEqual([]);
  });

  it('asks about a token within the clock skew, and a legacy token without exp', async () => {
    await strategy().authenticate(jwt({ exp: now() - 30 }), ['secret-store']);
    await strategy().authenticate(jwt({}), ['secret-store']);
    expect(api.asked).toHaveLength(2);
  });

  it('answers unavailable at once beyond maxInFlight reviews, and takes new ones as those end', async () => {
    const release: Array<() => void> = [];
    api.answer = () =>
      new Promise((resolve) =>
        release.push(() => resolve({ status: { authenticated: true, user: USER, audiences: ['secret-store'] } })),
      );
    const bounded = strategy(2);
    const token = jwt({ exp: now() + 600 });
    const first = [bounded.authenticate(token, ['secret-store']), bounded.authenticate(token, ['secret-store'])];
    await expect(bounded.authenticate(token, ['secret-store'])).rejects.toThrow(AuthenticationUnavailableError);
    expect(api.asked).toHaveLength(2);
    for (const r of release.splice(0)) r();
    await Promise.all(first);
    api.answer = async () => ({ status: { authenticated: true, user: USER, audiences: ['secret-store'] } });
    await expect(bounded.authenticate(token, ['secret-store'])).resolves.toMatchObject({ accepted: true });
  });

  it('names system:auth-delegator when the API server forbids this service its reviews', async () => {
    api.answer = async () => {
      throw new KubernetesApiError('forbidden', 'HTTP 403: tokenreviews is forbidden', 403);
    };
    await expect(strategy().authenticate(jwt({ exp: now() + 600 }), ['secret-store'])).rejects.toThrow(
      /needs the ClusterRole system:auth-delegator/,
    );
  });
});

describe('interpretTokenReview', () => {
  it.each([
    [{ authenticated: false }, ['secret-store'], 'invalid token'],
    [
      { authenticated: false, error: 'token audiences ["x"] is invalid for the target audiences' },
      ['a'],
      'wrong audience',
    ],
    [{ authenticated: true, user: USER, audiences: ['other'] }, ['secret-store'], 'wrong audience'],
    [{ authenticated: true, user: USER, audiences: [] }, ['secret-store'], 'wrong audience'],
    [{ authenticated: true, user: { username: 'alice' }, audiences: ['a'] }, ['a'], 'not a service account'],
  ])('refuses %j for %j with "%s"', (status, audiences, reason) => {
    expect(interpretTokenReview(status, audiences)).toEqual({ accepted: false, reason });
  });

  it('accepts a review without an audience for the API server’s own, and freezes the identity', () => {
    const result = interpretTokenReview({ authenticated: true, user: USER }, []);
    expect(result).toMatchObject({ accepted: true, caller: { username: USER.username, audiences: [] } });
    if (!result.accepted) throw new Error('refused');
    expect(() => (result.caller.groups as string[]).push('system:masters')).toThrow(TypeError);
    expect(() => (result.caller.extra?.['authentication.kubernetes.io/pod-name'] as string[]).push('x')).toThrow(
      TypeError,
    );
  });
});

describe('parseServiceAccountUsername', () => {
  it('reads namespace and name', () => {
    expect(parseServiceAccountUsername('system:serviceaccount:team-a:billing')).toEqual({
      namespace: 'team-a',
      name: 'billing',
    });
  });

  it.each([
    ['default', 'default'],
    ['kube-system', 'coredns'],
    ['a', 'b'],
    ['0', '9'],
    ['ns1', 'svc.account-2'],
    ['x'.repeat(63), 'y'.repeat(253)],
    ['n', 'a.b.c'],
  ])('accepts namespace %s and name %s', (namespace, name) => {
    expect(parseServiceAccountUsername(`system:serviceaccount:${namespace}:${name}`)).toEqual({ namespace, name });
  });

  it.each([
    ['another kind of subject', 'system:node:worker-1'],
    ['the group of all service accounts', 'system:serviceaccounts'],
    ['a namespace group', 'system:serviceaccounts:team-a'],
    ['a plural prefix with a name', 'system:serviceaccounts:team-a:billing'],
    ['a user', 'alice'],
    ['an admin user', 'kubernetes-admin'],
    ['an empty string', ''],
    ['the bare prefix', 'system:serviceaccount:'],
    ['no name', 'system:serviceaccount:team-a'],
    ['an empty name', 'system:serviceaccount:team-a:'],
    ['an empty namespace', 'system:serviceaccount::billing'],
    ['an extra colon part', 'system:serviceaccount:team-a:billing:extra'],
    ['a trailing colon', 'system:serviceaccount:team-a:billing:'],
    ['an upper-case prefix', 'System:ServiceAccount:team-a:billing'],
    ['a leading space', ' system:serviceaccount:team-a:billing'],
    ['a trailing space', 'system:serviceaccount:team-a:billing '],
    ['a trailing newline', 'system:serviceaccount:team-a:billing\n'],
    ['a newline inside', 'system:serviceaccount:team-a\n:billing'],
    ['a prefix not at the start', 'x-system:serviceaccount:team-a:billing'],
  ])('refuses %s', (_, username) => {
    expect(parseServiceAccountUsername(username)).toBeUndefined();
  });

  it.each([
    ['upper case', 'Team-A'],
    ['a leading hyphen', '-team'],
    ['a trailing hyphen', 'team-'],
    ['a dot', 'team.a'],
    ['an underscore', 'team_a'],
    ['64 characters', 'x'.repeat(64)],
    ['a wildcard', '*'],
    ['non-ASCII', 'tëam'],
  ])('refuses a namespace with %s', (_, namespace) => {
    expect(parseServiceAccountUsername(`system:serviceaccount:${namespace}:billing`)).toBeUndefined();
  });

  it.each([
    ['upper case', 'Billing'],
    ['a leading hyphen', '-billing'],
    ['a trailing hyphen', 'billing-'],
    ['a leading dot', '.billing'],
    ['a trailing dot', 'billing.'],
    ['two dots in a row', 'bill..ing'],
    ['a hyphen next to a dot', 'bill-.ing'],
    ['an underscore', 'bill_ing'],
    ['254 characters', 'y'.repeat(254)],
    ['a wildcard', 'billing-*'],
    ['a slash', 'billing/x'],
  ])('refuses a name with %s', (_, name) => {
    expect(parseServiceAccountUsername(`system:serviceaccount:team-a:${name}`)).toBeUndefined();
  });
});
