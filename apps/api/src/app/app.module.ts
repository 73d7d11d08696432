import { HttpModule } from '@nestjs/axios';
import { type DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { HealthIndicatorService } from '@nestjs/terminus';
import { K8sAuthModule, ServiceAccountGuard, TokenSources } from '@k8s-auth/nestjs';
import { HealthModule } from '@k8s-auth/service-runtime';
import type { ApiConfig } from './api.config';
import { API_CONFIG } from './api.tokens';
import { AppController } from './app.controller';
import { SecretStoreClient } from './secret-store.client';

/** Not ready while the token would expire within this margin: a call would fail on the way. */
const TOKEN_MARGIN_MS = 60_000;

@Module({})
export class AppModule {
  static register(config: ApiConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        K8sAuthModule.forRoot({
          isGlobal: true,
          audiences: [config.audience],
          tokenHeaders: ['authorization', 'x-client-id'],
          tokenSources: { 'secret-store': config.secretStoreToken },
        }),
        HttpModule,
        HealthModule.forRoot({
          inject: [TokenSources, HealthIndicatorService],
          useFactory: (sources: TokenSources, indicators: HealthIndicatorService) => [
            () => {
              const check = indicators.check('secret-store-token');
              const source = sources.get('secret-store');
              try {
                source.token();
              } catch (err) {
                return check.down((err as Error).message);
              }
              const left = (source.expiresAt?.getTime() ?? Infinity) - Date.now();
              return left > TOKEN_MARGIN_MS ? check.up() : check.down('the token expires within a minute');
            },
          ],
        }),
      ],
      controllers: [AppController],
      providers: [
        { provide: API_CONFIG, useValue: config },
        { provide: APP_GUARD, useClass: ServiceAccountGuard },
        SecretStoreClient,
      ],
    };
  }
}
