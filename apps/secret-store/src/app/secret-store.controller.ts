import { Controller, Get, Logger, Param } from '@nestjs/common';
import {
  AllowServiceAccounts,
  Caller,
  type CallerIdentity,
  logSafe,
  PublicRoute,
  RequireAccess,
} from '@k8s-auth/nestjs';

export const GREETING = 'Hello from secret store. You have been authenticated';

@Controller()
export class SecretStoreController {
  private readonly logger = new Logger('SecretStore');

  /** Only the API may ask, with a token meant for the secret store. */
  @Get()
  @AllowServiceAccounts('api:api')
  hello(@Caller() caller: CallerIdentity): string {
    this.logger.log(
      // The pod name is a claim of the token, as signed: escaped like any value from a request.
      `authenticated ${caller.username} pod=${logSafe(caller.podName ?? '-')} ` +
        `audiences=${caller.audiences.join(',') || '(api server)'}`,
    );
    return GREETING;
  }

  /** No token needed: a cheap answer for load balancers, and the benchmark's unguarded baseline. */
  @Get('public/ping')
  @PublicRoute()
  publicPing(): string {
    return 'pong';
  }

  /**
   * The same answer behind the guard: a caller can check that its token is accepted without reading
   * anything, and the benchmark measures the guard alone against `GET /public/ping`.
   */
  @Get('ping')
  @AllowServiceAccounts('api:api')
  ping(): string {
    return 'pong';
  }

  /**
   * Decided by Kubernetes RBAC alone: who may `get` `secrets.secret-store.example.com` in namespace
   * `secret-store` (k8s/base/secret-store-rbac.yaml grants it to api:api). No allowlist in code.
   */
  @Get('secrets/:name')
  @RequireAccess({
    verb: 'get',
    group: 'secret-store.example.com',
    resource: 'secrets',
    namespace: 'secret-store',
    name: { param: 'name' },
  })
  secret(@Param('name') name: string, @Caller() caller: CallerIdentity) {
    return { name, value: `value of ${name}`, readBy: caller.username };
  }
}
