import { credentials, loadPackageDefinition, type ServiceError, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import {
  BadGatewayException,
  GatewayTimeoutException,
  HttpStatus,
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
  ServiceUnavailableException,
} from '@nestjs/common';
import { logSafe, TokenSources, TokenUnavailableError } from '@k8s-auth/nestjs';
import { serviceAccountClientOptions } from '@k8s-auth/nestjs/grpc';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ApiConfig } from './api.config';
import { API_CONFIG } from './api.tokens';
import type { SecretStoreAnswer, SecretStoreGateway } from './secret-store.gateway';

type Hello = (
  request: object,
  options: { deadline: number },
  callback: (err: ServiceError | null, reply?: { greeting: string }) => void,
) => void;
interface SecretStoreStub {
  Hello: Hello;
  close(): void;
}

/** The store's refusals, relayed with the HTTP status of the same meaning, as the HTTP transport relays its answers. */
const RELAYED: Partial<Record<status, HttpStatus>> = {
  [status.UNAUTHENTICATED]: HttpStatus.UNAUTHORIZED,
  [status.PERMISSION_DENIED]: HttpStatus.FORBIDDEN,
  [status.INVALID_ARGUMENT]: HttpStatus.BAD_REQUEST,
};

/**
 * The store's proto: beside main.js in the build (webpack.config.js copies the secret store's), in the secret store's
 * sources when run from them (tests).
 */
function secretStoreProto(): string {
  const built = join(__dirname, 'proto', 'secret_store.proto');
  return existsSync(built)
    ? built
    : join(__dirname, '..', '..', '..', 'secret-store', 'src', 'proto', 'secret_store.proto');
}

/**
 * Calls the secret store over gRPC (plaintext) with this service's own token: `serviceAccountClientOptions` puts it in
 * the metadata of calls to `SECRET_STORE_GRPC_TARGET` only. Answers as the HTTP client does: the store's refusals are
 * relayed, a failure to get an answer is a 502, 503 or 504; the log says what happened.
 */
@Injectable()
export class SecretStoreGrpcClient implements SecretStoreGateway, OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(SecretStoreGrpcClient.name);
  private client?: SecretStoreStub;

  constructor(
    private readonly sources: TokenSources,
    @Inject(API_CONFIG) private readonly config: ApiConfig,
  ) {}

  onModuleInit(): void {
    const target = this.config.secretStoreGrpcTarget;
    const pkg = loadPackageDefinition(loadSync(secretStoreProto())) as unknown as {
      secretstore: { v1: { SecretStore: new (target: string, creds: unknown, options: object) => SecretStoreStub } };
    };
    this.client = new pkg.secretstore.v1.SecretStore(
      target,
      credentials.createInsecure(),
      serviceAccountClientOptions(this.sources.get('secret-store'), { target, header: this.config.tokenHeader }),
    );
  }

  onModuleDestroy(): void {
    this.client?.close();
  }

  async hello(): Promise<SecretStoreAnswer> {
    const target = this.config.secretStoreGrpcTarget;
    try {
      this.sources.get('secret-store').token();
    } catch (err) {
      if (!(err instanceof TokenUnavailableError)) throw err;
      this.logger.warn(`No token for the secret store: ${err.message}`);
      throw new ServiceUnavailableException('token unavailable');
    }
    const deadline = Date.now() + this.config.secretStoreTimeoutMs;
    const { err, reply } = await new Promise<{ err: ServiceError | null; reply?: { greeting: string } }>((resolve) =>
      this.client?.Hello({}, { deadline }, (err, reply) => resolve({ err, reply })),
    );
    if (!err) return { status: 200, contentType: 'text/plain; charset=utf-8', body: reply?.greeting ?? '' };

    const relayed = RELAYED[err.code as status];
    if (relayed) {
      const body = { statusCode: relayed, message: err.details, error: HttpStatus[relayed] };
      return { status: relayed, contentType: 'application/json; charset=utf-8', body: JSON.stringify(body) };
    }
    const what = `SecretStore/Hello at ${target}: status ${status[err.code] ?? err.code} (${logSafe(err.details)})`;
    this.logger.warn(what);
    if (err.code === status.DEADLINE_EXCEEDED) {
      throw new GatewayTimeoutException('the secret store did not answer in time');
    }
    // The store's own 503 (its API server is unavailable) carries retry-after; a channel that cannot connect does not.
    if (err.code === status.UNAVAILABLE && err.metadata?.get('retry-after').length) {
      throw new ServiceUnavailableException('the secret store is unavailable, retry later');
    }
    throw new BadGatewayException('the secret store cannot be reached');
  }
}
