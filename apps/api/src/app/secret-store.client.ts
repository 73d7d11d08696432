import { HttpService } from '@nestjs/axios';
import {
  BadGatewayException,
  GatewayTimeoutException,
  Inject,
  Injectable,
  Logger,
  type OnModuleInit,
  ServiceUnavailableException,
} from '@nestjs/common';
import { attachServiceAccountToken, TokenSources, TokenUnavailableError } from '@k8s-auth/nestjs';
import { isAxiosError } from 'axios';
import { API_CONFIG } from './api.tokens';
import type { ApiConfig } from './api.config';

import { type SecretStoreAnswer, SecretStoreGateway } from './secret-store.gateway';

/**
 * Calls the secret store with this service's own token, through the axios instance of `HttpModule.register({ baseURL
 * })`: the token goes to the store's origin only. Public answers stay generic; the log says what happened.
 */
@Injectable()
export class SecretStoreClient implements SecretStoreGateway, OnModuleInit {
  private readonly logger = new Logger(SecretStoreClient.name);

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

  hello(): Promise<SecretStoreAnswer> {
    return this.get('/');
  }

  /** The secret store's answer, whatever its status but a redirect; a failure to get one is a 502, 503 or 504. */
  async get(path: string): Promise<SecretStoreAnswer> {
    const url = this.http.axiosRef.getUri({ url: path });
    let answer: SecretStoreAnswer;
    try {
      const res = await this.http.axiosRef.get<string>(path, {
        timeout: this.config.secretStoreTimeoutMs,
        responseType: 'text',
        validateStatus: () => true,
      });
      answer = { status: res.status, contentType: String(res.headers['content-type'] ?? 'text/plain'), body: res.data };
    } catch (err) {
      if (err instanceof TokenUnavailableError) {
        this.logger.warn(`No token for the secret store: ${err.message}`);
        throw new ServiceUnavailableException('token unavailable');
      }
      // isAxiosError, not instanceof: @nestjs/axios may bring its own copy of axios.
      if (isAxiosError(err) && (err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT')) {
        this.logger.warn(`GET ${url}: no answer within ${this.config.secretStoreTimeoutMs} ms (${err.message})`);
        throw new GatewayTimeoutException('the secret store did not answer in time');
      }
      const reason = isAxiosError(err) ? `${err.code ?? 'error'}: ${err.message}` : String(err);
      this.logger.warn(`GET ${url}: ${reason}`);
      throw new BadGatewayException('the secret store cannot be reached');
    }
    // A redirect is not followed (the token would go along): its body is not the store's to relay.
    if (answer.status >= 300 && answer.status < 400) {
      this.logger.warn(`GET ${url}: the secret store answered ${answer.status}, not followed`);
      throw new BadGatewayException('the secret store gave an unexpected answer');
    }
    return answer;
  }
}
