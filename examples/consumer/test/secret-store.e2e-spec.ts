import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TOKEN_AUTHENTICATOR, TokenSources } from '@k8s-auth/nestjs';
import {
  fakeToken,
  fakeTokenAuthenticator,
  fakeTokenSources,
  type RecordingServer,
  startRecordingServer,
} from '@k8s-auth/nestjs/testing';
import { loadPackageDefinition, Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';
import request from 'supertest';
import { AppModule } from '../src/app.module';

// Where the app's outgoing token goes, with the test doubles: the guard's decisions are not the matter here.
const API = fakeToken('api');

/** A stand-in for the store's gRPC listener: answers Hello and keeps the `authorization` metadata of each call. */
async function startGrpcStandIn(): Promise<{ target: string; seen: string[]; close(): Promise<void> }> {
  const proto = loadPackageDefinition(
    loadSync(join(__dirname, '../src/secret-store/secret_store.proto')),
  ) as unknown as {
    secretstore: { v1: { SecretStore: { service: ServiceDefinition } } };
  };
  const seen: string[] = [];
  const server = new Server();
  server.addService(proto.secretstore.v1.SecretStore.service, {
    hello: (call: { metadata: { get(key: string): unknown[] } }, done: (err: null, reply: object) => void) => {
      seen.push(...call.metadata.get('authorization').map(String));
      done(null, { greeting: 'hello over gRPC' });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  return {
    target: `127.0.0.1:${port}`,
    seen,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

describe('the calls to the secret store', () => {
  let app: INestApplication;
  let secretStore: RecordingServer;
  let elsewhere: RecordingServer;
  let grpcStandIn: Awaited<ReturnType<typeof startGrpcStandIn>>;

  beforeAll(async () => {
    secretStore = await startRecordingServer('127.0.0.1');
    elsewhere = await startRecordingServer('127.0.0.2');
    grpcStandIn = await startGrpcStandIn();
    process.env.SECRET_STORE_URL = secretStore.url;
    process.env.SECRET_STORE_GRPC_TARGET = grpcStandIn.target;
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(TOKEN_AUTHENTICATOR)
      .useValue(fakeTokenAuthenticator({ identities: { [API]: 'api:api' } }))
      .overrideProvider(TokenSources)
      .useValue(fakeTokenSources({ 'secret-store': 'outgoing-test-token' }))
      .compile();
    app = moduleRef.createNestApplication();
    await app.init();
  });
  afterAll(async () => {
    await app?.close();
    await Promise.all([secretStore?.close(), elsewhere?.close(), grpcStandIn?.close()]);
    delete process.env.SECRET_STORE_URL;
    delete process.env.SECRET_STORE_GRPC_TARGET;
  });

  it('sends the token with fetch to the secret store, and not along a redirect elsewhere', async () => {
    const ready = () =>
      request(app.getHttpServer()).get('/reports/secret-store/ready').set('Authorization', `Bearer ${API}`);
    await ready().expect(200, { ready: true });
    expect(secretStore.seen.map((r) => r.headers.authorization)).toEqual(['Bearer outgoing-test-token']);

    secretStore.respond = (_req, res) => res.writeHead(302, { location: `${elsewhere.url}/readyz` }).end();
    await ready().expect(200, { ready: false });
    expect(elsewhere.seen).toEqual([]);
  });

  it('sends the token over gRPC with the Nest client, to its target', async () => {
    await request(app.getHttpServer())
      .get('/reports/secret-store/greeting')
      .set('Authorization', `Bearer ${API}`)
      .expect(200, { greeting: 'hello over gRPC' });
    expect(grpcStandIn.seen).toEqual(['Bearer outgoing-test-token']);
  });
});
