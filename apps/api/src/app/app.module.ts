import { HttpModule } from '@nestjs/axios';
import { type DynamicModule, Logger, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { HealthIndicatorService } from '@nestjs/terminus';
import { K8sAuthModule, ServiceAccountGuard, TokenSources } from '@k8s-auth/nestjs';
import { HealthModule, MetricsModule } from '@k8s-auth/service-runtime';
import type { ApiConfig } from './api.config';
import { API_CONFIG } from './api.tokens';
import { AppController } from './app.controller';
import { SecretStoreClient } from './secret-store.client';
import { SecretStoreGateway } from './secret-store.gateway';
import { SecretStoreGrpcClient } from './secret-store.grpc-client';

/** Not ready while the token would expire within this margin: a call would fail on the way. */
const TOKEN_MARGIN_MS = 60_000;
const logger = new Logger('Readiness');

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
        // An axios instance of its own, never the process-wide default: the token goes to the store's origin only.
        HttpModule.register({ baseURL: config.secretStoreUrl }),
        HealthModule.forRoot({
          inject: [TokenSources, HealthIndicatorService],
          useFactory: (sources: TokenSources, indicators: HealthIndicatorService) => [
            () => {
              const check = indicators.check('secret-store-token');
              const source = sources.get('secret-store');
              try {
                source.token();
              } catch (err) {
                // The detail (the file's path, the cause) is for the log, not for whoever asks.
                logger.warn(`Not ready: ${(err as Error).message}`);
                return check.down('token unavailable');
              }
              const left = (source.expiresAt?.getTime() ?? Infinity) - Date.now();
              return left > TOKEN_MARGIN_MS ? check.up() : check.down('the token expires within a minute');
            },
          ],
        }),
        MetricsModule.forRoot(),
      ],
      controllers: [AppController],
      providers: [
        { provide: API_CONFIG, useValue: config },
        { provide: APP_GUARD, useClass: ServiceAccountGuard },
        SecretStoreClient,
        ...(config.secretStoreTransport === 'grpc' ? [SecretStoreGrpcClient] : []),
        {
          provide: SecretStoreGateway,
          useExisting: config.secretStoreTransport === 'grpc' ? SecretStoreGrpcClient : SecretStoreClient,
        },
      ],
    };
  }
}
