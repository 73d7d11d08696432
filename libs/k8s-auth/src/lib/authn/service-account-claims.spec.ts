import { serviceAccountClaims } from '../../testing/jwt';
import { serviceAccountCaller } from './service-account-claims';

// The claims of a token whose signature, iss, exp and nbf are verified already (LocalJwtAuthenticator): what is
// left to check, and the identity built from them.

const ISSUER = 'https://127.0.0.1:6443';
const NOW_MS = Date.UTC(2030, 0, 1);
const SECONDS = NOW_MS / 1000;
const SKEW = { nowMs: NOW_MS, clockSkewMs: 60_000 };

const claims = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  ...serviceAccountClaims({
    issuer: ISSUER,
    namespace: 'api',
    serviceAccount: 'api',
    serviceAccountUid: 'sa-uid',
    audiences: ['secret-store', 'other'],
    pod: { name: 'api-0', uid: 'pod-uid' },
    issuedAt: SECONDS - 10,
    jti: 'the-jti',
  }),
  ...overrides,
});

/** The `kubernetes.io` claims with `overrides`. */
const k8s = (overrides: Record<string, unknown>) => ({
  'kubernetes.io': {
    namespace: 'api',
    serviceaccount: { name: 'api', uid: 'sa-uid' },
    pod: { name: 'api-0', uid: 'pod-uid' },
    ...overrides,
  },
});

describe('serviceAccountCaller', () => {
  it('gives the identity a TokenReview gives, with the asked audiences the token is for, in the asked order', () => {
    expect(serviceAccountCaller(claims(), ['other', 'third', 'secret-store'], SKEW)).toEqual({
      accepted: true,
      expiresAt: (claims()['exp'] as number) * 1000,
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
        audiences: ['other', 'secret-store'],
        extra: {
          'authentication.kubernetes.io/credential-id': ['JTI=the-jti'],
          'authentication.kubernetes.io/pod-name': ['api-0'],
          'authentication.kubernetes.io/pod-uid': ['pod-uid'],
        },
      },
    });
  });

  it('passes on the node a token is bound to', () => {
    const result = serviceAccountCaller(claims(k8s({ node: { name: 'node-1', uid: 'node-uid' } })), ['other'], SKEW);
    if (!result.accepted) throw new Error('refused');
    expect(result.caller.nodeName).toBe('node-1');
    expect(result.caller.extra).toMatchObject({
      'authentication.kubernetes.io/node-name': ['node-1'],
      'authentication.kubernetes.io/node-uid': ['node-uid'],
    });
  });

  it('accepts a single audience string, and a token bound to nothing and without a jti', () => {
    const token = claims({ aud: 'secret-store', jti: undefined, ...k8s({ pod: undefined }) });
    const result = serviceAccountCaller(token, ['secret-store'], SKEW);
    if (!result.accepted) throw new Error('refused');
    expect(result.caller.audiences).toEqual(['secret-store']);
    expect(result.caller.podName).toBeUndefined();
    expect(result.caller).not.toHaveProperty('extra');
  });

  it('refuses a token for other audiences with "wrong audience"', () => {
    const wrong = { accepted: false, reason: 'wrong audience' };
    expect(serviceAccountCaller(claims(), ['data-store'], SKEW)).toEqual(wrong);
    expect(serviceAccountCaller(claims({ aud: [] }), ['secret-store'], SKEW)).toEqual(wrong);
    // An empty list is the API server's own audience, which is never verified locally.
    expect(serviceAccountCaller(claims(), [], SKEW)).toEqual(wrong);
  });

  it.each<[string, Record<string, unknown>]>([
    ['no aud', { aud: undefined }],
    ['an aud that is a number', { aud: 7 }],
    ['an audience list with a number', { aud: ['secret-store', 1] }],
    ['an iat further ahead than the clock skew', { iat: SECONDS + 61 }],
    ['an iat that is a string', { iat: String(SECONDS) }],
    ['no kubernetes.io claims', { 'kubernetes.io': undefined }],
    ['kubernetes.io claims that are a list', { 'kubernetes.io': [] }],
    ['a namespace that is not a DNS label', k8s({ namespace: 'Api_1' })],
    ['a namespace that is not a string', k8s({ namespace: 7 })],
    ['a service account name that is not a DNS subdomain', k8s({ serviceaccount: { name: 'API', uid: 'sa-uid' } })],
    ['no service account', k8s({ serviceaccount: undefined })],
    ['no service account uid', k8s({ serviceaccount: { name: 'api' } })],
    ['an empty service account uid', k8s({ serviceaccount: { name: 'api', uid: '' } })],
    ['a pod without a uid', k8s({ pod: { name: 'api-0' } })],
    ['a pod with an empty name', k8s({ pod: { name: '', uid: 'pod-uid' } })],
    ['a pod name that is not a DNS subdomain', k8s({ pod: { name: 'api-0/status', uid: 'pod-uid' } })],
    ['a pod that is a string', k8s({ pod: 'api-0' })],
    ['a node without a name', k8s({ node: { uid: 'node-uid' } })],
    ['a secret without a uid', k8s({ secret: { name: 'bound' } })],
    ['a sub of another account', { sub: 'system:serviceaccount:kube-system:admin' }],
    ['a sub of another namespace', { sub: 'system:serviceaccount:other:api' }],
    ['a sub that is not a service account', { sub: 'admin' }],
    ['no sub', { sub: undefined }],
    ['a jti that is not a string', { jti: 7 }],
  ])('refuses %s with "invalid token"', (_what, overrides) => {
    expect(serviceAccountCaller(claims(overrides), ['secret-store'], SKEW)).toEqual({
      accepted: false,
      reason: 'invalid token',
    });
  });

  it('names what the token is bound to, and the kubernetes.io claims it does not know, for a TokenReview to check', () => {
    const bindingsOf = (overrides: Record<string, unknown>) => {
      const result = serviceAccountCaller(claims(k8s(overrides)), ['secret-store'], SKEW);
      return result.accepted ? result.bindings : result;
    };
    expect(bindingsOf({ pod: undefined, secret: { name: 'bound', uid: 'secret-uid' } })).toEqual({
      serviceAccount: { name: 'api', uid: 'sa-uid' },
      secret: { name: 'bound', uid: 'secret-uid' },
      unknown: [],
    });
    const webhook = { name: 'policy', uid: 'webhook-uid' };
    expect(
      bindingsOf({
        pod: undefined,
        validatingwebhookconfiguration: webhook,
        attestations: { 'admission-review-api-groups': ['apps'] },
        warnafter: SECONDS + 3600,
      }),
    ).toEqual({
      serviceAccount: { name: 'api', uid: 'sa-uid' },
      unknown: ['validatingwebhookconfiguration', 'attestations'],
    });
  });

  it('tolerates an iat ahead by the clock skew, no more, and a token without iat', () => {
    const accepts = (overrides: Record<string, unknown>) =>
      serviceAccountCaller(claims(overrides), ['secret-store'], SKEW).accepted;
    expect(accepts({ iat: SECONDS + 60 })).toBe(true);
    expect(accepts({ iat: SECONDS + 60.001 })).toBe(false);
    expect(accepts({ iat: undefined })).toBe(true);
  });

  // Spec modules run in strict mode, where writing to a frozen object throws.
  it('gives an identity no one can change: it is cached and shared between requests', () => {
    const result = serviceAccountCaller(claims(), ['secret-store'], SKEW);
    if (!result.accepted) throw new Error('refused');
    const caller = result.caller;
    expect(() => (caller.groups as string[]).push('system:masters')).toThrow(TypeError);
    expect(() => ((caller.groups as string[])[0] = 'system:masters')).toThrow(TypeError);
    expect(() => ((caller as { username: string }).username = 'system:admin')).toThrow(TypeError);
    expect(() => (caller.audiences as string[]).push('data-store')).toThrow(TypeError);
    expect(() => (caller.extra?.['authentication.kubernetes.io/pod-name'] as string[]).push('x')).toThrow(TypeError);
    expect(() => ((caller.extra as Record<string, string[]>)['more'] = [])).toThrow(TypeError);
    expect(() => ((result as { accepted: boolean }).accepted = false)).toThrow(TypeError);
    expect(caller.groups).toEqual(['system:serviceaccounts', 'system:serviceaccounts:api', 'system:authenticated']);
  });

  it('keeps nothing of the payload that its caller could change afterwards', () => {
    const payload = claims();
    const result = serviceAccountCaller(payload, ['secret-store'], SKEW);
    (payload['kubernetes.io'] as { pod: { name: string } }).pod.name = 'other-pod';
    expect(result.accepted && result.caller.podName).toBe('api-0');
  });
});
