import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { K8sAuthModule, ServiceAccountGuard } from '@k8s-auth/nestjs';
import { ReportsModule } from './reports/reports.module';

@Module({
  imports: [
    // Global by default: feature modules use the guard, @Caller() and TokenSources without importing it.
    // The API server is reached with the pod's own credentials, or $KUBECONFIG outside a cluster.
    K8sAuthModule.forRoot({
      tokenSources: {
        // This service's own token for calls to the secret store, projected into the pod by the kubelet.
        'secret-store': { file: process.env.SECRET_STORE_TOKEN_FILE ?? '/var/run/secrets/tokens/secret-store-token' },
      },
    }),
    ReportsModule,
  ],
  // Every route of the app needs a token, unless it is marked @PublicRoute().
  providers: [{ provide: APP_GUARD, useExisting: ServiceAccountGuard }],
})
export class AppModule {}
