import type { AuthenticationResult, TokenAuthenticator } from './authentication.types';

/**
 * `local+review`: local verification first, so forgeries never reach the API server, then one TokenReview, which
 * also knows whether the token's pod and service account still exist.
 */
export class LocalThenReview implements TokenAuthenticator {
  constructor(
    private readonly local: TokenAuthenticator,
    private readonly review: TokenAuthenticator,
  ) {}

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    const local = await this.local.authenticate(token, audiences);
    return local.accepted ? this.review.authenticate(token, audiences) : local;
  }
}
