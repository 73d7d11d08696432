import { Controller, UseGuards } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import { AllowServiceAccounts, Caller, type CallerIdentity, ServiceAccountGuard } from '@k8s-auth/nestjs';

@Controller()
@UseGuards(ServiceAccountGuard) // guards it whether or not the microservice inherits the app's APP_GUARD
@AllowServiceAccounts('api:api')
export class ReportsGrpcController {
  @GrpcMethod('Reports', 'Summary') // reports.proto: rpc Summary (SummaryRequest) returns (SummaryReply)
  summary(@Caller() caller: CallerIdentity) {
    return { for: caller.username };
  }
}
