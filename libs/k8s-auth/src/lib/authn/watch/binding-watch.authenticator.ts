import { Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { refused, type AuthenticationResult, type TokenAuthenticator } from '../authentication.types';
import type { AllowlistedCallers, BindingWatches, BindingWatchScope } from './binding-watches';
import { debugEnabled, tokenFingerprint } from '../../observability/log-safe';

const INVALID = refused('invalid token');

/**
 * `local+watch`: the token is verified locally (cached per token), then, on every request, the service account and
 * pod its verified claims bind it to are looked up by uid in the watches of the allowlisted callers, so a deletion is
 * seen as soon as its watch event arrives, whatever the cache holds, with no TokenReview:
 *
 * - watches fresh (proven to deliver within `watchStalenessMs`): held with the token's uids → accepted; not held → a
 *   GET of what is missing (the object may be seconds old); gone → refused, and remembered as gone;
 * - watches not fresh (not synced yet, failed, or their connection silent for longer than the bound): TokenReview,
 *   cached as in `tokenReview` mode (503 if it cannot be made). Nothing is accepted on stale data;
 * - a caller no allowlist names, a token bound to a Secret (watching Secrets takes the right to read them), to a node
 *   and no pod, or to a kind of object this library does not know: TokenReview, cached.
 */
export class BindingWatchAuthenticator implements TokenAuthenticator, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('BindingWatch');

  /** `local` and `review` answer with their own caches. */
  constructor(
    private readonly local: TokenAuthenticator,
    private readonly review: TokenAuthenticator,
    private readonly watches: BindingWatches,
    private readonly allowlist: AllowlistedCallers,
  ) {}

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

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    const result = await this.local.authenticate(token, audiences);
    if (!result.accepted) return result;
    const scope = this.scopeOf(result);
    const now = Date.now();
    if (!scope || !result.bindings || !scope.isFresh(now)) return this.review.authenticate(token, audiences);
    if (await scope.exists(result.bindings, now, result.expiresAt ?? now)) return result;
    if (debugEnabled(this.logger)) {
      this.logger.debug(`token ${tokenFingerprint(token)} refused: its service account or pod is gone`);
    }
    return INVALID;
  }

  /** The watches that can vouch for everything the token is bound to, if any. */
  private scopeOf(result: AuthenticationResult & { accepted: true }): BindingWatchScope | undefined {
    const bindings = result.bindings;
    if (!bindings || bindings.secret || bindings.unknown.length > 0 || (bindings.node && !bindings.pod)) {
      return undefined;
    }
    return this.watches.scopeOf(result.caller.namespace, result.caller.serviceAccount);
  }
}
