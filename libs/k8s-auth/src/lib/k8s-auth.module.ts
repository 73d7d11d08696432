import { Module } from '@nestjs/common';
import { AccessReviewer } from './access-reviewer';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import { KubernetesApiClient } from './kubernetes-api.client';
import { LocalTokenVerifier } from './local-token-verifier';
import { ServiceAccountGuard } from './service-account.guard';
import { TokenAuthenticator } from './token-authenticator';
import { TokenReviewer } from './token-reviewer';
import { TokenSources } from './token-sources';

/**
 * `K8sAuthModule.forRoot({...})` or `forRootAsync({ useFactory, inject })`, with `isGlobal: true` to
 * use it from every module. Provides ServiceAccountGuard (incoming calls, with TokenReviewer and
 * AccessReviewer) and TokenSources (outgoing).
 */
@Module({
  providers: [
    KubernetesApiClient,
    K8sAuthMetrics,
    TokenReviewer,
    LocalTokenVerifier,
    TokenAuthenticator,
    AccessReviewer,
    ServiceAccountGuard,
    TokenSources,
  ],
  // The guard is also built where `@UseGuards` names it, so everything it injects is exported.
  exports: [
    MODULE_OPTIONS_TOKEN,
    K8sAuthMetrics,
    ServiceAccountGuard,
    TokenReviewer,
    LocalTokenVerifier,
    TokenAuthenticator,
    AccessReviewer,
    TokenSources,
  ],
})
export class K8sAuthModule extends ConfigurableModuleClass {}
