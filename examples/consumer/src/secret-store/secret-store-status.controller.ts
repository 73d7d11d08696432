import { Controller, Get } from '@nestjs/common';
import { AllowServiceAccounts } from '@k8s-auth/nestjs';
import { SecretStoreClient } from './secret-store.client';

@Controller('reports/secret-store')
@AllowServiceAccounts('api:api')
export class SecretStoreStatusController {
  constructor(private readonly secretStore: SecretStoreClient) {}

  @Get('status')
  status(): Promise<unknown> {
    return this.secretStore.status(); // a call with this service's own token
  }
}
