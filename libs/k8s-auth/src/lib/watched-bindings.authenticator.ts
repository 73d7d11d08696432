import { Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { createDecoder } from 'fast-jwt';
import { refused, type ReviewResult, type TokenAuthenticator } from './authentication.types';
import { tokenFingerprint } from './bearer-token';
import type { Allowlisted, BoundObjectWatches } from './bound-object-watches';
import { boundSecret } from './service-account-claims';

const decodePayload = createDecoder();
const INVALID = refused('invalid token');

/**
 * `local+watch`: the token is verified locally (cached per token), then, on every request, its service account and
 * bound pod are looked up by uid in the watches of the allowlisted callers, so a deletion is seen as soon as its watch
 * event arrives, whatever the cache holds, with no TokenReview:
 *
 * - watches fresh: held with the token's uids → accepted; not held → a GET of what is missing (the object may be
 *   seconds old), and a token whose object is gone stays refused (uids never come back);
 * - not synced yet, or broken longer than `watchStalenessMs`: a token accepted before (while its cached answer
 *   lives) whose objects are still held keeps working; any other goes to TokenReview (503 if that fails);
 * - a caller no allowlist names, a token bound to a Secret (watching Secrets takes the right to read them) or to a
 *   node and no pod: TokenReview, cached.
 */
export class WatchedBindingsAuthenticator implements TokenAuthenticator, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('BindingWatch');
  private readonly local: TokenAuthenticator;
  private readonly review: TokenAuthenticator;
  /** Cached answers: a WeakSet entry lives no longer than the cache entry it marks. */
  private readonly secretBound = new WeakSet<ReviewResult>();
  private readonly confirmed = new WeakSet<ReviewResult>();
  private readonly revoked = new WeakSet<ReviewResult>();

  constructor(
    localJwt: TokenAuthenticator,
    tokenReview: TokenAuthenticator,
    private readonly watches: BoundObjectWatches,
    private readonly allowlist: { allChecked: Promise<void>; allowlisted(): Allowlisted },
    cached: (inner: TokenAuthenticator) => TokenAuthenticator,
  ) {
    this.local = cached({ authenticate: (token, audiences) => this.verifyLocally(localJwt, token, audiences) });
    this.review = cached(tokenReview);
  }

  /** The allowlists are complete once the guard has checked every route, as the app starts. */
  onApplicationBootstrap(): void {
    void this.allowlist.allChecked.then(() => this.watches.start(this.allowlist.allowlisted()));
  }

  onApplicationShutdown(): void {
    this.watches.stop();
  }

  /** Resolves once every watch holds its first list (for tests and measurements). */
  whenSynced(): Promise<void> {
    return this.watches.whenSynced();
  }

  async authenticate(token: string, audiences: readonly string[]): Promise<ReviewResult> {
    const result = await this.local.authenticate(token, audiences);
    if (!result.accepted) return result;
    if (this.revoked.has(result)) return INVALID;
    const caller = result.caller;
    const scope = this.watches.scopeOf(caller.namespace, caller.serviceAccount);
    const nodeOnly = caller.nodeName !== undefined && caller.podName === undefined;
    if (!scope || nodeOnly || this.secretBound.has(result)) return this.review.authenticate(token, audiences);

    const now = Date.now();
    if (scope.isFresh(now)) {
      if (scope.holds(caller, now) || (await scope.exists(caller, now))) {
        this.confirmed.add(result);
        return result;
      }
      this.revoked.add(result);
      this.logger.debug(`token ${tokenFingerprint(token)} refused: its service account or pod is gone`);
      return INVALID;
    }
    if (this.confirmed.has(result) && scope.holds(caller, now)) return result;
    return this.review.authenticate(token, audiences);
  }

  /** Local verification, noting tokens bound to a Secret (a claim the caller identity does not carry). */
  private async verifyLocally(
    localJwt: TokenAuthenticator,
    token: string,
    audiences: readonly string[],
  ): Promise<ReviewResult> {
    const result = await localJwt.authenticate(token, audiences);
    if (result.accepted && boundSecret(decodePayload(token) as Record<string, unknown>) !== undefined) {
      this.secretBound.add(result);
    }
    return result;
  }
}
