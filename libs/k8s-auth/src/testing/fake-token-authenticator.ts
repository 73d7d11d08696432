import {
  accepted,
  type AuthenticationResult,
  type CallerIdentity,
  refused,
  type TokenAuthenticator,
} from '../lib/authn/authentication.types';
import { extractToken } from '../lib/guard/bearer-token';
import { isDns1123Label, isDns1123Subdomain } from '../lib/kube/kubernetes-names';

/** Who a fake token stands for. */
export interface FakeIdentity {
  /** The caller, `namespace:name`. */
  serviceAccount: string;
  /** The audiences the token is for, instead of the authenticator's `audiences`. */
  audiences?: readonly string[];
  /** Copied into the `CallerIdentity` that `@Caller()` gets. */
  uid?: string;
  podName?: string;
  podUid?: string;
  nodeName?: string;
}

export interface FakeTokenAuthenticatorOptions {
  /** By token: the caller it stands for, `'namespace:name'` or a {@link FakeIdentity}. Make tokens with {@link fakeToken}. */
  identities: Record<string, string | FakeIdentity>;
  /** The audiences every token is for (a route asking for another one gets 403 `wrong audience`). @default any */
  audiences?: readonly string[];
}

/**
 * A token with the shape the guard requires (three canonical base64url segments), standing for nothing: no API server
 * accepts it, and it is the same for the same `label`. For the `identities` of {@link fakeTokenAuthenticator}.
 */
export function fakeToken(label: string): string {
  const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return [segment({ alg: 'none', typ: 'fake' }), segment({ fake: label }), segment('not signed')].join('.');
}

/**
 * A `TokenAuthenticator` that knows the tokens a test names, and nothing else: for tests of an app's own logic that
 * boot it with no API server and no credentials, through
 * `overrideProvider(TOKEN_AUTHENTICATOR).useValue(fakeTokenAuthenticator({ ... }))`. The real guard still runs:
 * it reads the token from the request (401 without one), asks this authenticator (403 `invalid token` for a token not
 * listed, `wrong audience` for one meant for another audience), applies the route's allowlist and gives the caller to
 * `@Caller()`; and since it asks no API server, start-up needs no credentials. Whether Kubernetes would accept a
 * token is for the control plane of this entry to prove (`startControlPlane`).
 * @throws Error at once for an identity that the guard could never reach or that names no ServiceAccount.
 */
export function fakeTokenAuthenticator(options: FakeTokenAuthenticatorOptions): TokenAuthenticator {
  const identities = new Map<string, FakeIdentity>();
  for (const [token, given] of Object.entries(options.identities)) {
    const identity = typeof given === 'string' ? { serviceAccount: given } : given;
    const extracted = extractToken({ 'x-client-id': token }, ['x-client-id'], Number.MAX_SAFE_INTEGER);
    if (extracted.kind !== 'token') {
      throw new Error(
        `fakeTokenAuthenticator: the guard refuses the token of ${identity.serviceAccount} before asking an ` +
          `authenticator (${extracted.kind === 'malformed' ? extracted.reason : 'empty'}); make it with fakeToken()`,
      );
    }
    serviceAccountName(identity.serviceAccount);
    identities.set(token, identity);
  }
  return {
    authenticate: async (token, audiences) => authenticate(identities.get(token), audiences, options.audiences),
  };
}

function authenticate(
  identity: FakeIdentity | undefined,
  asked: readonly string[],
  defaultAudiences: readonly string[] | undefined,
): AuthenticationResult {
  if (!identity) return refused('invalid token');
  const meantFor = identity.audiences ?? defaultAudiences;
  // An empty list asks for the API server's own audience, which no listed audience is.
  const confirmed = meantFor ? asked.filter((audience) => meantFor.includes(audience)) : [...asked];
  if (meantFor && confirmed.length === 0) return refused('wrong audience');
  const { namespace, name } = serviceAccountName(identity.serviceAccount);
  const caller: CallerIdentity = {
    username: `system:serviceaccount:${namespace}:${name}`,
    namespace,
    serviceAccount: name,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
    audiences: confirmed,
    ...(identity.uid === undefined ? {} : { uid: identity.uid }),
    ...(identity.podName === undefined ? {} : { podName: identity.podName }),
    ...(identity.podUid === undefined ? {} : { podUid: identity.podUid }),
    ...(identity.nodeName === undefined ? {} : { nodeName: identity.nodeName }),
  };
  return accepted(caller);
}

function serviceAccountName(entry: string): { namespace: string; name: string } {
  const [namespace, name, ...rest] = entry.split(':');
  if (rest.length > 0 || !isDns1123Label(namespace) || name === undefined || !isDns1123Subdomain(name)) {
    throw new Error(`fakeTokenAuthenticator: ${JSON.stringify(entry)} is not a ServiceAccount as "namespace:name"`);
  }
  return { namespace, name };
}
