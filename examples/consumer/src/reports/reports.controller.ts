import { Controller, Get } from '@nestjs/common';
import { AllowServiceAccounts, Caller, type CallerIdentity } from '@k8s-auth/nestjs';

@Controller('reports')
@AllowServiceAccounts('api:api') // namespace:name of the callers let in
export class ReportsController {
  @Get('summary')
  summary(@Caller() caller: CallerIdentity) {
    // caller: what the API server vouched for, e.g. username 'system:serviceaccount:api:api' and the calling pod
    return { for: caller.username };
  }
}
