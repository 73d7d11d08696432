import { type DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { API_SERVER_AUDIENCE, K8sAuthModule, ServiceAccountGuard } from '@k8s-auth/nestjs';
import { HealthModule, MetricsModule } from '@k8s-auth/service-runtime';
import type { SecretStoreConfig } from './secret-store.config';
import { SecretStoreController } from './secret-store.controller';
import { SecretStoreGrpcController } from './secret-store.grpc.controller';

@Module({})
export class AppModule {
  static register(config: SecretStoreConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        K8sAuthModule.forRoot({
          isGlobal: true,
          audiences: config.mode === 'legacy' ? API_SERVER_AUDIENCE : [config.audience],
          verification: config.verification,
          ...(config.maxCacheEntries === undefined ? {} : { maxCacheEntries: config.maxCacheEntries }),
          ...(config.cacheTtlMs === undefined ? {} : { cacheTtlMs: config.cacheTtlMs }),
          ...(config.watchStalenessMs === undefined ? {} : { watchStalenessMs: config.watchStalenessMs }),
          // The seed sends X-Client-Id; a request may use one of the two, never both.
          tokenHeaders: ['authorization', 'x-client-id'],
        }),
        HealthModule.forRoot(),
        MetricsModule.forRoot(),
      ],
      controllers: [SecretStoreController, SecretStoreGrpcController],
      providers: [{ provide: APP_GUARD, useClass: ServiceAccountGuard }],
    };
  }
}
