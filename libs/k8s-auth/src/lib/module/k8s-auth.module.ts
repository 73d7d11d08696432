import { type DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { AccessReviewer } from '../authz/access-reviewer';
import { TOKEN_AUTHENTICATOR } from '../authn/authentication.types';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import {
  ASYNC_OPTIONS_TYPE,
  ConfigurableModuleClass,
  MODULE_OPTIONS_TOKEN,
  OPTIONS_TYPE,
} from './k8s-auth.module-definition';
import { KubernetesApiClient } from '../kube/kubernetes-api.client';
import { RESOLVED_OPTIONS, resolvedOptionsProvider } from './resolved-options';
import { RoutePolicies } from '../guard/route-policy';
import { ServiceAccountGuard } from '../guard/service-account.guard';
import { tokenAuthenticatorProvider } from '../authn/token-authenticator.provider';
import { TokenSources } from '../outgoing/named-token-sources';

const PROVIDERS = [
  resolvedOptionsProvider,
  KubernetesApiClient,
  K8sAuthMetrics,
  tokenAuthenticatorProvider,
  RoutePolicies,
  AccessReviewer,
  ServiceAccountGuard,
  TokenSources,
];

// The guard is also built where `@UseGuards` or `APP_GUARD` names it, so everything it injects is exported.
const EXPORTS = [
  MODULE_OPTIONS_TOKEN,
  RESOLVED_OPTIONS,
  KubernetesApiClient,
  K8sAuthMetrics,
  TOKEN_AUTHENTICATOR,
  RoutePolicies,
  AccessReviewer,
  ServiceAccountGuard,
  TokenSources,
];

/**
 * `K8sAuthModule.forRoot({...})` or `forRootAsync({ useFactory, inject })`, once, in the root module. Global unless
 * `isGlobal: false`: feature modules then use `ServiceAccountGuard`, `TokenSources` and the decorators with no import
 * (a bare `imports: [K8sAuthModule]` is allowed and adds nothing).
 */
@Module({})
export class K8sAuthModule extends ConfigurableModuleClass {
  static forRoot(options: typeof OPTIONS_TYPE): DynamicModule {
    return withProviders(super.forRoot(options));
  }

  static forRootAsync(options: typeof ASYNC_OPTIONS_TYPE): DynamicModule {
    return withProviders(super.forRootAsync(options));
  }
}

function withProviders(module: DynamicModule): DynamicModule {
  return {
    ...module,
    imports: [...(module.imports ?? []), DiscoveryModule],
    providers: [...(module.providers ?? []), ...PROVIDERS],
    exports: [...(module.exports ?? []), ...EXPORTS],
  };
}
