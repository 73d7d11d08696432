import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TOKEN_AUTHENTICATOR, TokenSources } from '@k8s-auth/nestjs';
import { fakeToken, fakeTokenAuthenticator, fakeTokenSources } from '@k8s-auth/nestjs/testing';
import { mkdtempSync, rmSync } from 'node:fs'; // no credentials
import { tmpdir } from 'node:os'; // no credentials
import { join } from 'node:path'; // no credentials
import request from 'supertest';
import { AppModule } from '../src/app.module';

// The app booted with no API server and no credentials, for tests of its own logic: the guard asks a fake
// authenticator, which knows the tokens named here. What Kubernetes decides is tested in auth.e2e-spec.ts.
const API = fakeToken('api'); // a well-formed token that stands for nothing but what the test says
const DATA_STORE = fakeToken('data-store');

describe('AppModule, without a cluster', () => {
  let app: INestApplication;
  let emptyHome: string; // no credentials

  beforeAll(async () => {
    emptyHome = mkdtempSync(join(tmpdir(), 'no-credentials-')); // no credentials
    process.env.HOME = emptyHome; // no credentials
    delete process.env.KUBECONFIG; // no credentials
    delete process.env.KUBERNETES_SERVICE_HOST; // no credentials
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(TOKEN_AUTHENTICATOR)
      .useValue(fakeTokenAuthenticator({ identities: { [API]: 'api:api', [DATA_STORE]: 'data-store:data-store' } }))
      .overrideProvider(TokenSources) // no token file either
      .useValue(fakeTokenSources({ 'secret-store': 'outgoing-test-token' }))
      .compile();
    app = moduleRef.createNestApplication();
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    rmSync(emptyHome, { recursive: true, force: true }); // no credentials
  });

  it('lets api:api in, as @Caller()', () =>
    request(app.getHttpServer())
      .get('/reports/summary')
      .set('Authorization', `Bearer ${API}`)
      .expect(200, { for: 'system:serviceaccount:api:api' }));

  it('refuses another service account, and a request without a token', async () => {
    await request(app.getHttpServer()).get('/reports/summary').set('Authorization', `Bearer ${DATA_STORE}`).expect(403);
    await request(app.getHttpServer()).get('/reports/summary').expect(401);
  });
});
