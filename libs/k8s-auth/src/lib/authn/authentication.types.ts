/** Who called, as the API server (or its signature on the token) vouches for it. Frozen: handlers cannot change it. */
export interface CallerIdentity {
  /** `system:serviceaccount:<namespace>:<name>` */
  readonly username: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly uid?: string;
  readonly groups: readonly string[];
  /** The pod the token is bound to (projected tokens). */
  readonly podName?: string;
  readonly podUid?: string;
  readonly nodeName?: string;
  /** The audiences the token was confirmed for; empty for a review without an audience. */
  readonly audiences: readonly string[];
  /** `user.extra` as a TokenReview gives it (pod name and uid, credential id, …), passed on to SubjectAccessReviews. */
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

/** An object a token is bound to, by name and uid. */
export interface BoundObject {
  readonly name: string;
  readonly uid: string;
}

/**
 * The objects a locally verified token is bound to, as its `kubernetes.io` claims name them: what the API server
 * checks still exist when it reviews the token.
 */
export interface TokenBindings {
  readonly serviceAccount: BoundObject;
  readonly pod?: BoundObject;
  readonly node?: BoundObject;
  readonly secret?: BoundObject;
  /**
   * Other claims of `kubernetes.io` (e.g. a bound webhook configuration, attestations): only a TokenReview can check
   * what they bind the token to.
   */
  readonly unknown: readonly string[];
}

/** Why a token was refused; safe to show to the caller. */
export type RefusalReason = 'invalid token' | 'wrong audience' | 'not a service account';

export type AuthenticationResult =
  | {
      readonly accepted: true;
      readonly caller: CallerIdentity;
      /** When the token expires (its `exp`), where known: an answer about it is not reused past then. */
      readonly expiresAt?: number;
      /** What the token is bound to, from its verified claims: given by local verification only. */
      readonly bindings?: TokenBindings;
    }
  | { readonly accepted: false; readonly reason: RefusalReason };

/** No answer could be had (the API server or its keys are out of reach, or too busy): fail closed with a 503. */
export class AuthenticationUnavailableError extends Error {
  override readonly name = 'AuthenticationUnavailableError';
}

/** @deprecated Renamed {@link AuthenticationResult}; the old name goes in the next minor version. */
export type ReviewResult = AuthenticationResult;
/** @deprecated Renamed {@link AuthenticationUnavailableError}; the old name goes in the next minor version. */
export const ReviewUnavailableError = AuthenticationUnavailableError;
/** @deprecated Renamed {@link AuthenticationUnavailableError}; the old name goes in the next minor version. */
export type ReviewUnavailableError = AuthenticationUnavailableError;

/**
 * One way of deciding whose a token is: TokenReview, local JWT verification, or a composition of them (a cache
 * around one, local then TokenReview). The guard asks the one the module provides under {@link TOKEN_AUTHENTICATOR}.
 */
export interface TokenAuthenticator {
  /**
   * Who `token` belongs to, if it is valid for one of `audiences` (an empty list: the API server's own audience).
   * @throws AuthenticationUnavailableError when no answer can be had now.
   */
  authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult>;
}

/** Injection token of the module's {@link TokenAuthenticator}. */
export const TOKEN_AUTHENTICATOR = Symbol('k8s-auth:token-authenticator');

/**
 * An accepted result whose identity no one can change afterwards: it is cached and shared between requests. Freezes
 * `caller`, its lists and `extra` in place, so pass an identity built for this answer. `expiresAt`: the token's `exp`,
 * in milliseconds since the epoch.
 */
export function accepted(caller: CallerIdentity, expiresAt?: number, bindings?: TokenBindings): AuthenticationResult {
  Object.freeze(caller.groups);
  Object.freeze(caller.audiences);
  if (caller.extra) {
    for (const values of Object.values(caller.extra)) Object.freeze(values);
    Object.freeze(caller.extra);
  }
  Object.freeze(caller);
  if (bindings) {
    for (const bound of [bindings.serviceAccount, bindings.pod, bindings.node, bindings.secret]) Object.freeze(bound);
    Object.freeze(bindings.unknown);
  }
  return Object.freeze({
    accepted: true,
    caller,
    ...(expiresAt === undefined ? {} : { expiresAt }),
    ...(bindings ? { bindings: Object.freeze(bindings) } : {}),
  });
}

export function refused(reason: RefusalReason): AuthenticationResult {
  return Object.freeze({ accepted: false, reason });
}
