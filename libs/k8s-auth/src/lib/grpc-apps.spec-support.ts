import { credentials, loadPackageDefinition, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { INestMicroservice } from '@nestjs/common';
import { type GrpcOptions, Transport } from '@nestjs/microservices';
import { createServer } from 'node:net';
import { join } from 'node:path';

// What the gRPC specs share (not part of the library: excluded from its build): the spec service's proto, a port to
// serve it on, and a client that reports what came back, status and trailers included.

export const SPEC_PROTO = join(__dirname, 'guard', 'grpc-guard.spec.proto');
export const SPEC_PACKAGE = 'k8sauth.spec';

/** A free loopback port: Nest's gRPC server does not tell the port it bound. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Nest's gRPC transport options for the spec service on `url`. */
export const grpcOptions = (url: string): GrpcOptions => ({
  transport: Transport.GRPC,
  options: { package: SPEC_PACKAGE, protoPath: SPEC_PROTO, url },
});

export interface SpecSecret {
  name?: string;
  value?: string;
  caller?: string;
}

/** What a call got: messages, or the status, its details and the trailers. */
export interface CallOutcome {
  messages: SpecSecret[];
  code: number;
  details: string;
  trailers: Record<string, string[]>;
}

type UnaryMethod = (
  request: object,
  metadata: Metadata,
  callback: (err: ServiceError | null, value?: SpecSecret) => void,
) => { on(event: 'status', listener: (s: { metadata: Metadata }) => void): unknown };
type StreamMethod = (request: object, metadata: Metadata) => NodeJS.EventEmitter;

interface SecretsClient {
  Read: UnaryMethod;
  Checked: UnaryMethod;
  Health: UnaryMethod;
  Watch: StreamMethod;
  close(): void;
}

/** A plain grpc-js client of the spec service; headers are sent as given (a list sends the key several times). */
export class SpecClient {
  private readonly client: SecretsClient;

  constructor(url: string) {
    const definition = loadSync(SPEC_PROTO);
    const pkg = loadPackageDefinition(definition) as unknown as {
      k8sauth: { spec: { Secrets: new (url: string, creds: unknown) => SecretsClient } };
    };
    this.client = new pkg.k8sauth.spec.Secrets(url, credentials.createInsecure());
  }

  unary(
    method: 'Read' | 'Checked' | 'Health',
    request: object,
    headers: Record<string, string | string[]> = {},
  ): Promise<CallOutcome> {
    return new Promise((resolve) => {
      let answer: Omit<CallOutcome, 'trailers'> | undefined;
      let trailers: Record<string, string[]> | undefined;
      const done = () => answer && trailers && resolve({ ...answer, trailers });
      const call = this.client[method](request, metadataOf(headers), (err, value) => {
        answer = err
          ? { messages: [], code: err.code, details: err.details }
          : { messages: value ? [value] : [], code: 0, details: '' };
        if (err) trailers ??= trailersOf(err.metadata);
        done();
      });
      call.on('status', (status) => {
        trailers = trailersOf(status.metadata);
        done();
      });
    });
  }

  stream(request: object, headers: Record<string, string | string[]> = {}): Promise<CallOutcome> {
    return new Promise((resolve) => {
      const messages: SpecSecret[] = [];
      const call = this.client.Watch(request, metadataOf(headers));
      call.on('data', (m: SpecSecret) => messages.push(m));
      call.on('error', () => undefined); // the status below says it all
      call.on('status', (s: { code: number; details: string; metadata: Metadata }) =>
        resolve({ messages, code: s.code, details: s.details, trailers: trailersOf(s.metadata) }),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function metadataOf(headers: Record<string, string | string[]>): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(headers)) {
    for (const v of [value].flat()) metadata.add(key, v);
  }
  return metadata;
}

function trailersOf(metadata: Metadata | undefined): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const [key, value] of Object.entries(metadata?.toJSON() ?? {})) result[key] = value.map(String);
  return result;
}

/** Closes a Nest gRPC app. */
export const closeAll = async (apps: INestMicroservice[]) => {
  for (const app of apps.splice(0)) await app.close();
};
