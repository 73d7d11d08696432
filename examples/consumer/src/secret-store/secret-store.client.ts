import { HttpService } from '@nestjs/axios';
import { Injectable, type OnModuleInit } from '@nestjs/common';
import { attachServiceAccountToken, TokenSources } from '@k8s-auth/nestjs';
import { firstValueFrom } from 'rxjs';

@Injectable()
export class SecretStoreClient implements OnModuleInit {
  constructor(
    private readonly http: HttpService,
    private readonly tokens: TokenSources,
  ) {}

  onModuleInit(): void {
    attachServiceAccountToken(this.http.axiosRef, this.tokens.get('secret-store'));
  }

  async status(): Promise<unknown> {
    const { data } = await firstValueFrom(this.http.get<unknown>('/status'));
    return data;
  }
}
