import {
  type ChannelCredentials,
  Client,
  type handleUnaryCall,
  loadPackageDefinition,
  Metadata,
  type MethodDefinition,
  Server,
  ServerCredentials,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';

/** One call the server received: its method and metadata. */
export interface RecordedCall {
  method: string;
  metadata: Record<string, string[]>;
}

/** A grpc-js server of `test.Echo` (unary `Say`) that records every call, for tests of what a client sends where. */
export interface GrpcRecordingServer {
  /** `host:port`, the client's target. */
  target: string;
  seen: RecordedCall[];
  /** How `Say` answers: a status code to refuse with, or undefined to answer. */
  respond: (call: RecordedCall) => Promise<status | undefined> | status | undefined;
  close(): Promise<void>;
}

const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
};
const say: MethodDefinition<unknown, unknown> = {
  path: '/test.Echo/Say',
  requestStream: false,
  responseStream: false,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
  originalName: 'say',
};

/** The package `test` with the service `Echo`, without a .proto file: messages are JSON. */
export const echoPackageDefinition = { 'test.Echo': { Say: say } } as unknown as PackageDefinition;

export type EchoClient = Client & {
  Say(request: unknown, callback: (err: ServiceError | null, r?: unknown) => void): void;
};
export const EchoClient = (loadPackageDefinition(echoPackageDefinition)['test'] as Record<string, unknown>)[
  'Echo'
] as new (target: string, credentials: ChannelCredentials, options?: object) => EchoClient;

/** Calls `Say`, resolving to the answer or rejecting with the ServiceError. */
export function callSay(client: EchoClient, request: unknown = { text: 'hi' }): Promise<unknown> {
  return new Promise((resolve, reject) => client.Say(request, (err, answer) => (err ? reject(err) : resolve(answer))));
}

export async function startGrpcRecordingServer(
  host = '127.0.0.1',
  credentials = ServerCredentials.createInsecure(),
): Promise<GrpcRecordingServer> {
  const server = new Server();
  const recording: GrpcRecordingServer = {
    target: '',
    seen: [],
    respond: () => undefined,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
  const handler: handleUnaryCall<unknown, unknown> = (call, callback) => {
    const seen: RecordedCall = { method: say.path, metadata: metadataOf(call.metadata) };
    recording.seen.push(seen);
    Promise.resolve(recording.respond(seen)).then(
      (code) => (code === undefined ? callback(null, { echo: call.request }) : callback({ code, details: 'refused' })),
      (err: Error) => callback({ code: status.INTERNAL, details: err.message }),
    );
  };
  server.addService({ Say: say }, { Say: handler });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:0`, credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  recording.target = `${host}:${port}`;
  return recording;
}

function metadataOf(metadata: Metadata): Record<string, string[]> {
  const map = metadata.getMap();
  return Object.fromEntries(
    Object.keys(map).map((key) => [key, metadata.get(key).map((v) => (Buffer.isBuffer(v) ? v.toString() : v))]),
  );
}
