import { HttpService } from '@nestjs/axios';
import {
  BadGatewayException,
  GatewayTimeoutException,
  Inject,
  Injectable,
  type OnModuleInit,
  ServiceUnavailableException,
} from '@nestjs/common';
import { attachServiceAccountToken, TokenSources, TokenUnavailableError } from '@k8s-auth/nestjs';
import { isAxiosError } from 'axios';
import { API_CONFIG } from './api.tokens';
import type { ApiConfig } from './api.config';

export interface SecretStoreAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** Calls the secret store with this service's own token. */
@Injectable()
export class SecretStoreClient implements OnModuleInit {
  constructor(
    private readonly http: HttpService,
    private readonly sources: TokenSources,
    @Inject(API_CONFIG) private readonly config: ApiConfig,
  ) {}

  onModuleInit(): void {
    attachServiceAccountToken(this.http.axiosRef, this.sources.get('secret-store'), {
      header: this.config.tokenHeader,
    });
  }

  /** The secret store's answer, whatever its status; a failure to get one is a 502, 503 or 504. */
  async get(path: string): Promise<SecretStoreAnswer> {
    const url = new URL(path, this.config.secretStoreUrl).toString();
    try {
      const res = await this.http.axiosRef.get<string>(url, {
        timeout: this.config.secretStoreTimeoutMs,
        responseType: 'text',
        validateStatus: () => true,
      });
      return { status: res.status, contentType: String(res.headers['content-type'] ?? 'text/plain'), body: res.data };
    } catch (err) {
      if (err instanceof TokenUnavailableError) throw new ServiceUnavailableException(err.message);
      // isAxiosError, not instanceof: @nestjs/axios may bring its own copy of axios.
      if (isAxiosError(err) && (err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT')) {
        throw new GatewayTimeoutException(
          `The secret store at ${url} did not answer within ${this.config.secretStoreTimeoutMs} ms`,
        );
      }
      const reason = isAxiosError(err) ? `${err.code ?? 'error'}: ${err.message}` : String(err);
      throw new BadGatewayException(`Cannot reach the secret store at ${url}: ${reason}`);
    }
  }
}
