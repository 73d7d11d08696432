import { Injectable } from '@nestjs/common';
import { fetchWithServiceAccountToken, TokenSources } from '@k8s-auth/nestjs';

@Injectable()
export class SecretStoreHealth {
  private readonly url = process.env.SECRET_STORE_URL ?? 'http://app.secret-store.svc.cluster.local';
  private readonly fetch: typeof fetch;

  constructor(tokens: TokenSources) {
    // The token goes to the secret store's origin only, and follows no redirect away from it.
    this.fetch = fetchWithServiceAccountToken(tokens.get('secret-store'), { origin: new URL(this.url).origin });
  }

  async ready(): Promise<{ ready: boolean }> {
    const answer = await this.fetch(`${this.url}/readyz`);
    await answer.body?.cancel();
    return { ready: answer.ok };
  }
}
