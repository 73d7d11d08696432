import { Controller, Logger, UseGuards } from '@nestjs/common';
import { GrpcMethod, Payload } from '@nestjs/microservices';
import {
  AllowServiceAccounts,
  Caller,
  type CallerIdentity,
  logSafe,
  PublicRoute,
  RequireAccess,
  ServiceAccountGuard,
} from '@k8s-auth/nestjs';
import { GREETING } from './secret-store.controller';

/** The proto package of `proto/secret_store.proto`. */
export const GRPC_PACKAGE = 'secretstore.v1';

/**
 * The secret store's answers over gRPC (`proto/secret_store.proto`), with the same policies as its HTTP routes.
 * `@UseGuards`: the APP_GUARD of the HTTP app does not reach a connected microservice that does not inherit its
 * configuration, and this one does not (its global filters are HTTP's).
 */
@Controller()
@UseGuards(ServiceAccountGuard)
export class SecretStoreGrpcController {
  private readonly logger = new Logger('SecretStore');

  @GrpcMethod('SecretStore', 'Hello')
  @AllowServiceAccounts('api:api')
  hello(@Caller() caller: CallerIdentity): { greeting: string } {
    this.logger.log(`authenticated ${caller.username} pod=${logSafe(caller.podName ?? '-')} over gRPC`);
    return { greeting: GREETING };
  }

  /** The request's `name` field names the secret RBAC decides about (INVALID_ARGUMENT if it is not a name). */
  @GrpcMethod('SecretStore', 'GetSecret')
  @RequireAccess({
    verb: 'get',
    group: 'secret-store.example.com',
    resource: 'secrets',
    namespace: 'secret-store',
    name: { param: 'name' },
  })
  getSecret(@Payload() request: { name: string }, @Caller() caller: CallerIdentity) {
    return { name: request.name, value: `value of ${request.name}`, readBy: caller.username };
  }

  @GrpcMethod('SecretStore', 'Ping')
  @AllowServiceAccounts('api:api')
  ping(): { pong: string } {
    return { pong: 'pong' };
  }

  @GrpcMethod('SecretStore', 'PublicPing')
  @PublicRoute()
  publicPing(): { pong: string } {
    return { pong: 'pong' };
  }
}
