import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { K8sAuthModule, ServiceAccountGuard } from '@k8s-auth/nestjs';
import { ReportsModule } from './reports/reports.module';
import { SecretStoreModule } from './secret-store/secret-store.module'; // outgoing

@Module({
  imports: [
    // Global by default: feature modules use the guard and @Caller() without importing it. The API server is reached
    // with the pod's own credentials, or $KUBECONFIG outside a cluster.
    K8sAuthModule.forRootAsync({
      // Built as the app starts, not as this file loads, so it sees an environment that a test sets first.
      useFactory: () => ({
        audiences: ['reports'], // what callers' tokens must be meant for: this service
        tokenSources: { 'secret-store': { file: process.env.SECRET_STORE_TOKEN_FILE } }, // outgoing
      }),
    }),
    ReportsModule,
    SecretStoreModule, // outgoing
  ],
  // Every route of the app needs a token, unless it is marked @PublicRoute().
  providers: [{ provide: APP_GUARD, useExisting: ServiceAccountGuard }],
})
export class AppModule {}
