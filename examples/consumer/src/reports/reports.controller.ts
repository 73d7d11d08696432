import { Controller, Get } from '@nestjs/common';
import { AllowServiceAccounts, Audience, Caller, type CallerIdentity } from '@k8s-auth/nestjs';
import { SecretStoreClient } from './secret-store.client';

@Controller('reports')
@Audience('reports') // callers' tokens must be meant for this service
@AllowServiceAccounts('api:api') // namespace:name of the callers let in
export class ReportsController {
  constructor(private readonly secretStore: SecretStoreClient) {}

  @Get('summary')
  async summary(@Caller() caller: CallerIdentity) {
    // caller: what the API server vouched for, e.g. username 'system:serviceaccount:api:api' and the calling pod
    return { for: caller.username, secretStore: await this.secretStore.status() };
  }
}
