import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { ClientGrpc } from '@nestjs/microservices';
import { firstValueFrom, type Observable } from 'rxjs';

export const SECRET_STORE_GRPC = 'SECRET_STORE_GRPC';

interface SecretStoreService {
  hello(request: Record<string, never>): Observable<{ greeting: string }>;
}

/** The secret store's gRPC service, through the Nest client that SecretStoreModule registers with the token. */
@Injectable()
export class SecretStoreGrpcClient implements OnModuleInit {
  private service!: SecretStoreService;

  constructor(@Inject(SECRET_STORE_GRPC) private readonly client: ClientGrpc) {}

  onModuleInit(): void {
    this.service = this.client.getService<SecretStoreService>('SecretStore');
  }

  hello(): Promise<{ greeting: string }> {
    return firstValueFrom(this.service.hello({}));
  }
}
