import { Inject, Injectable } from '@nestjs/common';
import { DEFAULTS } from './k8s-auth.constants';
import { MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import type { K8sAuthModuleOptions, TokenVerification } from './k8s-auth-options.interface';
import { LocalTokenVerifier } from './local-token-verifier';
import { type ReviewResult, TokenReviewer } from './token-reviewer';

/**
 * Verifies a caller's token the way the `verification` option says: TokenReview (cached), local JWT verification,
 * or local verification confirmed by one TokenReview per token. What the guard asks.
 */
@Injectable()
export class TokenAuthenticator {
  readonly verification: TokenVerification;

  constructor(
    @Inject(MODULE_OPTIONS_TOKEN) options: K8sAuthModuleOptions,
    private readonly reviewer: TokenReviewer,
    private readonly local: LocalTokenVerifier,
  ) {
    this.verification = options.verification ?? DEFAULTS.verification;
  }

  /**
   * Who `token` belongs to, if it is valid for one of `audiences`.
   * @throws ReviewUnavailableError when the API server (or, locally, its signing keys) cannot be reached.
   */
  authenticate(token: string, audiences: readonly string[]): Promise<ReviewResult> {
    // Not async: the default path hands the reviewer's promise straight through, at no extra cost per request.
    if (this.verification === 'tokenReview') return this.reviewer.review(token, audiences);
    if (this.verification === 'local') return this.local.verify(token, audiences);
    return this.localThenReview(token, audiences);
  }

  private async localThenReview(token: string, audiences: readonly string[]): Promise<ReviewResult> {
    const local = await this.local.verify(token, audiences);
    // The API server has the last word: it also knows whether the pod and the service account still exist.
    return local.accepted ? this.reviewer.review(token, audiences) : local;
  }
}
