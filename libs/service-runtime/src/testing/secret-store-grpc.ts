import { credentials, loadPackageDefinition, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..', '..');
/** The proto as the build ships it beside the secret store's main.js. */
export const SECRET_STORE_PROTO = join(ROOT, 'dist', 'apps', 'secret-store', 'proto', 'secret_store.proto');

export type SecretStoreMethod = 'Hello' | 'GetSecret' | 'Ping' | 'PublicPing';

/** What a call got: the reply, or the status with its details; and the trailers either way. */
export interface GrpcAnswer {
  code: number;
  details: string;
  reply?: Record<string, unknown>;
  trailers: Record<string, string[]>;
}

type Unary = (
  request: object,
  metadata: Metadata,
  callback: (err: ServiceError | null, reply?: Record<string, unknown>) => void,
) => { on(event: 'status', listener: (status: { metadata: Metadata }) => void): unknown };

/** A plain grpc-js client of the secret store's gRPC listener (plaintext), for tests and benchmarks. */
export class SecretStoreGrpcClient {
  private readonly client: Record<SecretStoreMethod, Unary> & { close(): void };

  /** `proto`: the built service's copy by default; the images test, which has no build, reads the source's. */
  constructor(target: string, proto = SECRET_STORE_PROTO) {
    const pkg = loadPackageDefinition(loadSync(proto)) as unknown as {
      secretstore: { v1: { SecretStore: new (target: string, creds: unknown) => SecretStoreGrpcClient['client'] } };
    };
    this.client = new pkg.secretstore.v1.SecretStore(target, credentials.createInsecure());
  }

  /** Calls `method`; `headers` go in the call's metadata (e.g. `{ authorization: 'Bearer …' }`). */
  call(method: SecretStoreMethod, request: object = {}, headers: Record<string, string> = {}): Promise<GrpcAnswer> {
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
    return new Promise((resolve) => {
      let answer: Omit<GrpcAnswer, 'trailers'> | undefined;
      let trailers: GrpcAnswer['trailers'] | undefined;
      const done = () => answer && trailers && resolve({ ...answer, trailers });
      const call = this.client[method].call(this.client, request, metadata, (err, reply) => {
        answer = err ? { code: err.code, details: err.details } : { code: 0, details: '', reply };
        if (err) trailers ??= trailersOf(err.metadata);
        done();
      });
      call.on('status', (status) => {
        trailers = trailersOf(status.metadata);
        done();
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

function trailersOf(metadata: Metadata | undefined): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const [key, values] of Object.entries(metadata?.toJSON() ?? {})) result[key] = values.map(String);
  return result;
}
