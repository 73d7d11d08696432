import { Controller, Get } from '@nestjs/common';
import { AllowServiceAccounts } from '@k8s-auth/nestjs';
import { SecretStoreClient } from './secret-store.client';
import { SecretStoreHealth } from './secret-store-health';
import { SecretStoreGrpcClient } from './secret-store-grpc.client';

@Controller('reports/secret-store')
@AllowServiceAccounts('api:api')
export class SecretStoreStatusController {
  constructor(
    private readonly secretStore: SecretStoreClient,
    private readonly health: SecretStoreHealth,
    private readonly grpc: SecretStoreGrpcClient,
  ) {}

  @Get('status')
  status(): Promise<unknown> {
    return this.secretStore.status(); // a call with this service's own token
  }

  @Get('ready')
  ready(): Promise<{ ready: boolean }> {
    return this.health.ready(); // the same token, sent with fetch
  }

  @Get('greeting')
  greeting(): Promise<{ greeting: string }> {
    return this.grpc.hello(); // the same token, over gRPC
  }
}
