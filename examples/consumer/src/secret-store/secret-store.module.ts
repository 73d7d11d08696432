import { HttpModule } from '@nestjs/axios';
import { Module } from '@nestjs/common';
import { SecretStoreClient } from './secret-store.client';
import { SecretStoreHealth } from './secret-store-health';
import { SecretStoreStatusController } from './secret-store-status.controller';

@Module({
  imports: [
    // An axios instance of its own for the secret store (never axios's process-wide default, as plain `HttpModule`
    // would give): the token is attached to this instance and sent to its baseURL's origin only.
    HttpModule.registerAsync({
      useFactory: () => ({ baseURL: process.env.SECRET_STORE_URL ?? 'http://app.secret-store.svc.cluster.local' }),
    }),
  ],
  controllers: [SecretStoreStatusController],
  providers: [SecretStoreClient, SecretStoreHealth],
})
export class SecretStoreModule {}
