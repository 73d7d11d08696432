import { Controller, Get, Res } from '@nestjs/common';
import { AllowServiceAccounts, Caller, type CallerIdentity, PublicRoute } from '@k8s-auth/nestjs';
import type { FastifyReply } from 'fastify';
import { SecretStoreGateway } from './secret-store.gateway';

@Controller()
export class AppController {
  constructor(private readonly secretStore: SecretStoreGateway) {}

  /** Public, as in the seed: asks the secret store, as this service (over HTTP or gRPC), and forwards its answer. */
  @Get()
  @PublicRoute()
  async root(@Res() reply: FastifyReply): Promise<void> {
    const answer = await this.secretStore.hello();
    reply.status(answer.status).type(answer.contentType).send(answer.body);
  }

  /** Only the data store may read the report, with a token meant for this service. */
  @Get('internal/report')
  @AllowServiceAccounts('data-store:data-store')
  report(@Caller() caller: CallerIdentity) {
    return { report: 'all systems nominal', for: caller.username };
  }
}
