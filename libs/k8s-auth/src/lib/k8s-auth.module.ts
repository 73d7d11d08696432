import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { AccessReviewer } from './access-reviewer';
import { TOKEN_AUTHENTICATOR } from './authentication.types';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import { KubernetesApiClient } from './kubernetes-api.client';
import { RoutePolicies } from './route-policy';
import { ServiceAccountGuard } from './service-account.guard';
import { tokenAuthenticatorProvider } from './token-authenticator.provider';
import { TokenSources } from './token-sources';

/**
 * `K8sAuthModule.forRoot({...})` or `forRootAsync({ useFactory, inject })`, with `isGlobal: true` to
 * use it from every module. Provides ServiceAccountGuard (incoming calls, with its token authenticator
 * and AccessReviewer) and TokenSources (outgoing).
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    KubernetesApiClient,
    K8sAuthMetrics,
    tokenAuthenticatorProvider,
    RoutePolicies,
    AccessReviewer,
    ServiceAccountGuard,
    TokenSources,
  ],
  // The guard is also built where `@UseGuards` or `APP_GUARD` names it, so everything it injects is exported.
  exports: [
    MODULE_OPTIONS_TOKEN,
    K8sAuthMetrics,
    TOKEN_AUTHENTICATOR,
    RoutePolicies,
    AccessReviewer,
    ServiceAccountGuard,
    TokenSources,
  ],
})
export class K8sAuthModule extends ConfigurableModuleClass {}
