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
import request from 'supertest';
import { AppModule } from '../src/app.module';

// Where the app's outgoing token goes, with the test doubles: the guard's decisions are not the matter here.
const API = fakeToken('api');

describe('the calls to the secret store', () => {
  let app: INestApplication;
  let secretStore: RecordingServer;
  let elsewhere: RecordingServer;

  beforeAll(async () => {
    secretStore = await startRecordingServer('127.0.0.1');
    elsewhere = await startRecordingServer('127.0.0.2');
    process.env.SECRET_STORE_URL = secretStore.url;
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
    await Promise.all([secretStore?.close(), elsewhere?.close()]);
    delete process.env.SECRET_STORE_URL;
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
});
