import { HttpModule } from '@nestjs/axios';
import { Module } from '@nestjs/common';
import { ClientsModule, type GrpcOptions, Transport } from '@nestjs/microservices';
import { TokenSources } from '@k8s-auth/nestjs';
import { serviceAccountClientOptions } from '@k8s-auth/nestjs/grpc';
import { join } from 'node:path';
import { SECRET_STORE_GRPC, SecretStoreGrpcClient } from './secret-store-grpc.client';
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
    // The store's gRPC service, with the same token: sent on this client's calls, to its url only.
    ClientsModule.registerAsync([
      {
        name: SECRET_STORE_GRPC,
        inject: [TokenSources],
        useFactory: (tokens: TokenSources): GrpcOptions => {
          const url = process.env.SECRET_STORE_GRPC_TARGET ?? 'app.secret-store.svc.cluster.local:8082';
          return {
            transport: Transport.GRPC,
            options: {
              url,
              package: 'secretstore.v1',
              protoPath: join(__dirname, 'secret_store.proto'),
              channelOptions: serviceAccountClientOptions(tokens.get('secret-store'), { target: url }),
            },
          };
        },
      },
    ]),
  ],
  controllers: [SecretStoreStatusController],
  providers: [SecretStoreClient, SecretStoreHealth, SecretStoreGrpcClient],
})
export class SecretStoreModule {}
