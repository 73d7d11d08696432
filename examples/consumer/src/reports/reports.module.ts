import { HttpModule } from '@nestjs/axios';
import { Module } from '@nestjs/common';
import { ReportsController } from './reports.controller';
import { SecretStoreClient } from './secret-store.client';

@Module({
  imports: [
    // An axios instance of its own for the secret store (never axios's process-wide default, as plain `HttpModule`
    // would give): the token is attached to this instance and sent to its baseURL's origin only.
    HttpModule.register({ baseURL: process.env.SECRET_STORE_URL ?? 'http://app.secret-store.svc.cluster.local' }),
  ],
  controllers: [ReportsController],
  providers: [SecretStoreClient],
})
export class ReportsModule {}
