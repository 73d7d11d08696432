import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import request from 'supertest';
import { freePort } from '@k8s-auth/internal/testing';
import { countApiServerRequests, mintServiceAccountToken } from '@k8s-auth/nestjs/testing';
import { type BuiltService, SecretStoreGrpcClient } from '@k8s-auth/service-runtime/testing';
import { ACCOUNTS, type DemoEnvironment, startDemoEnvironment } from './demo-environment';

const GREETING = 'Hello from secret store. You have been authenticated';

describe('the walkthrough: api, secret-store and data-store on a real control plane', () => {
  let env: DemoEnvironment;
  let store: BuiltService;
  let api: BuiltService;
  let dataStore: BuiltService;

  const token = (account: { namespace: string; name: string }, audience: string) =>
    mintServiceAccountToken(env.cp.kubeConfig, account, { audiences: [audience], expirationSeconds: 600 }).then(
      (t) => t.token,
    );

  beforeAll(async () => {
    env = await startDemoEnvironment();
  });
  afterAll(() => env?.stop());

  it('answers 502 until the secret store is up, naming the target in its log only; then 200 with its greeting', async () => {
    const storePort = await freePort();
    const storeUrl = `http://127.0.0.1:${storePort}`;
    api = await env.startCaller('api', { secretStoreUrl: storeUrl });

    const down = await request(api.url).get('/').expect(502);
    expect(down.body.message).toBe('the secret store cannot be reached');
    expect(down.text).not.toContain(`127.0.0.1:${storePort}`);
    expect(readFileSync(api.logFile, 'utf8')).toContain(`GET ${storeUrl}/: ECONNREFUSED`);

    store = await env.startSecretStore({ listen: `127.0.0.1:${storePort}` });
    const up = await request(api.url).get('/').expect(200);
    expect(up.text).toBe(GREETING);
    // The store logged who called, from which pod, for which audience: never the token.
    const log = readFileSync(store.logFile, 'utf8');
    expect(log).toMatch(/authenticated system:serviceaccount:api:api pod=api-0 audiences=secret-store/);
    expect(log).not.toContain(readFileSync(env.tokenFiles.api, 'utf8').trim().split('.')[1].slice(0, 16));
  });

  it('refuses the data-store, a missing token and a token for another audience', async () => {
    dataStore = await env.startCaller('data-store', { secretStoreUrl: store.url });
    const refused = await request(dataStore.url).get('/').expect(403);
    expect(refused.body.message).toBe('caller not allowed');

    const missing = await request(store.url).get('/').expect(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');

    const dataStoreToken = readFileSync(env.tokenFiles.dataStore, 'utf8').trim();
    await request(store.url).get('/').set('Authorization', `Bearer ${dataStoreToken}`).expect(403);

    const forTheApi = await request(store.url)
      .get('/')
      .set('Authorization', `Bearer ${await token(ACCOUNTS.api, 'api')}`)
      .expect(403);
    expect(forTheApi.body.message).toBe('wrong audience');
  });

  it('serves the same answers over gRPC, from the proto the build ships: api allowed, others refused', async () => {
    const grpc = new SecretStoreGrpcClient(store.grpcTarget ?? '');
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const apiToken = readFileSync(env.tokenFiles.api, 'utf8').trim();
    const dataStoreToken = readFileSync(env.tokenFiles.dataStore, 'utf8').trim();
    try {
      expect(await grpc.call('Hello', {}, bearer(apiToken))).toMatchObject({ code: 0, reply: { greeting: GREETING } });
      expect(await grpc.call('Hello', {}, bearer(dataStoreToken))).toMatchObject({
        code: 7, // PERMISSION_DENIED
        details: 'caller not allowed',
      });
      const missing = await grpc.call('Hello');
      expect(missing).toMatchObject({ code: 16, details: 'token required' }); // UNAUTHENTICATED
      expect(missing.trailers['www-authenticate']).toEqual(['Bearer']);
      expect(await grpc.call('Hello', {}, bearer(await token(ACCOUNTS.api, 'api')))).toMatchObject({
        code: 7,
        details: 'wrong audience',
      });
      // RBAC about the secret the request names, as GET /secrets/:name.
      expect(await grpc.call('GetSecret', { name: 'db-password' }, bearer(apiToken))).toMatchObject({
        code: 0,
        reply: { name: 'db-password', readBy: 'system:serviceaccount:api:api' },
      });
      expect(await grpc.call('GetSecret', { name: 'db-password' }, bearer(dataStoreToken))).toMatchObject({
        code: 7,
        details: 'access denied by RBAC',
      });
      expect(await grpc.call('GetSecret', { name: '../etc' }, bearer(apiToken))).toMatchObject({ code: 3 });
      expect(await grpc.call('PublicPing')).toMatchObject({ code: 0, reply: { pong: 'pong' } });
      expect(readFileSync(store.logFile, 'utf8')).toMatch(
        /authenticated system:serviceaccount:api:api pod=api-0 over gRPC/,
      );
    } finally {
      grpc.close();
    }
  });

  it('calls the store over gRPC when SECRET_STORE_TRANSPORT=grpc: api allowed, data-store refused', async () => {
    const overGrpc = (who: 'api' | 'data-store') =>
      env.startCaller(who, {
        secretStoreUrl: 'http://127.0.0.1:9', // not used: every call goes over gRPC
        env: { SECRET_STORE_TRANSPORT: 'grpc', SECRET_STORE_GRPC_TARGET: store.grpcTarget ?? '' },
      });
    const grpcApi = await overGrpc('api');
    const grpcDataStore = await overGrpc('data-store');
    try {
      expect((await request(grpcApi.url).get('/').expect(200)).text).toBe(GREETING);
      const refused = await request(grpcDataStore.url).get('/').expect(403);
      expect(refused.body.message).toBe('caller not allowed');
      expect(readFileSync(store.logFile, 'utf8')).toMatch(
        /authenticated system:serviceaccount:api:api pod=api-0 over gRPC/,
      );
    } finally {
      await Promise.all([grpcApi.stop(), grpcDataStore.stop()]);
    }
    // A store that cannot be reached over gRPC is a 502, as over HTTP.
    const unreachable = await env.startCaller('api', {
      secretStoreUrl: 'http://127.0.0.1:9',
      env: { SECRET_STORE_TRANSPORT: 'grpc', SECRET_STORE_GRPC_TARGET: `127.0.0.1:${await freePort()}` },
    });
    try {
      expect((await request(unreachable.url).get('/').expect(502)).body.message).toBe(
        'the secret store cannot be reached',
      );
    } finally {
      await unreachable.stop();
    }
  });

  it("guards the API's report: the data-store may read it, the api itself may not", async () => {
    const res = await request(api.url)
      .get('/internal/report')
      .set('Authorization', `Bearer ${await token(ACCOUNTS.dataStore, 'api')}`)
      .expect(200);
    expect(res.body.for).toBe('system:serviceaccount:data-store:data-store');
    await request(api.url)
      .get('/internal/report')
      .set('Authorization', `Bearer ${await token(ACCOUNTS.api, 'api')}`)
      .expect(403);
    // The seed's header works too, but not together with Authorization.
    const ds = await token(ACCOUNTS.dataStore, 'api');
    await request(api.url).get('/internal/report').set('X-Client-Id', ds).expect(200);
    await request(api.url)
      .get('/internal/report')
      .set('X-Client-Id', ds)
      .set('Authorization', `Bearer ${ds}`)
      .expect(401);
  });

  it('lets Kubernetes RBAC alone decide who reads a secret: api by its RoleBinding, not data-store', async () => {
    const apiToken = readFileSync(env.tokenFiles.api, 'utf8').trim();
    const res = await request(store.url)
      .get('/secrets/db-password')
      .set('Authorization', `Bearer ${apiToken}`)
      .expect(200);
    expect(res.body).toMatchObject({ name: 'db-password', readBy: 'system:serviceaccount:api:api' });
    const denied = await request(store.url)
      .get('/secrets/db-password')
      .set('Authorization', `Bearer ${readFileSync(env.tokenFiles.dataStore, 'utf8').trim()}`)
      .expect(403);
    expect(denied.body.message).toBe('access denied by RBAC');
    await request(store.url).get('/secrets/..%2Fetc').set('Authorization', `Bearer ${apiToken}`).expect(400);
  });

  it('serves health endpoints without a token', async () => {
    await request(api.url).get('/healthz').expect(200);
    const ready = await request(api.url).get('/readyz').expect(200);
    expect(ready.body.info['secret-store-token'].status).toBe('up');
    await request(store.url).get('/readyz').expect(200);
  });

  it("serves the guard's metrics at /metrics without a token, in Prometheus's text format", async () => {
    const apiToken = readFileSync(env.tokenFiles.api, 'utf8').trim();
    await request(store.url).get('/ping').set('Authorization', `Bearer ${apiToken}`).expect(200);
    await request(store.url).get('/ping').expect(401);
    const metrics = await request(store.url).get('/metrics').expect(200);
    expect(metrics.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(metrics.text).toMatch(/^k8s_auth_guard_decisions_total\{decision="allowed"\} [1-9]\d*$/m);
    expect(metrics.text).toMatch(/^k8s_auth_guard_decisions_total\{decision="unauthenticated"\} [1-9]\d*$/m);
    expect(metrics.text).not.toContain(apiToken.split('.')[1].slice(0, 16));
    await request(api.url).get('/metrics').expect(200);
  });

  it('keeps every request working while the kubelet-style projector rotates the token files', async () => {
    let stop = false;
    const statuses: number[] = [];
    let loading = true;
    const load = (async () => {
      while (!stop) statuses.push((await request(api.url).get('/')).status);
    })().finally(() => (loading = false));
    // At least 8 rotations and more than 20 requests, however slowly this machine answers them.
    for (let i = 0; loading && (i < 8 || statuses.length <= 20); i++) {
      await env.projector.rotateNow();
      await new Promise((r) => setTimeout(r, 250));
    }
    stop = true;
    await load;
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });

  it('runs the legacy variant: a default token reviewed without an audience; the projected store refuses it', async () => {
    const legacyStore = await env.startSecretStore({ mode: 'legacy' });
    const legacyApi = await env.startCaller('api', {
      secretStoreUrl: legacyStore.url,
      tokenFile: env.tokenFiles.apiLegacy,
    });
    const res = await request(legacyApi.url).get('/').expect(200);
    expect(res.text).toBe(GREETING);

    const legacyToken = readFileSync(env.tokenFiles.apiLegacy, 'utf8').trim();
    const refused = await request(store.url).get('/').set('Authorization', `Bearer ${legacyToken}`).expect(403);
    expect(refused.body.message).toBe('wrong audience');
    await Promise.all([legacyApi.stop(), legacyStore.stop()]);
  });

  it('runs the store with local verification: the same answers, without a TokenReview', async () => {
    const localStore = await env.startSecretStore({ verification: 'local' });
    const localApi = await env.startCaller('api', { secretStoreUrl: localStore.url });
    const reviewsBefore = await countApiServerRequests(env.cp.kubeConfig, 'tokenreviews');
    expect((await request(localApi.url).get('/').expect(200)).text).toBe(GREETING);

    const send = (token: string) => request(localStore.url).get('/').set('Authorization', `Bearer ${token}`);
    const dataStoreToken = readFileSync(env.tokenFiles.dataStore, 'utf8').trim();
    expect((await send(dataStoreToken).expect(403)).body.message).toBe('caller not allowed');
    const [header, payload, signature] = readFileSync(env.tokenFiles.api, 'utf8').trim().split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    const edited = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString('base64url');
    expect((await send(`${header}.${edited}.${signature}`).expect(403)).body.message).toBe('invalid token');

    // The JWT library is bundled with the store: every answer above came from it, none from the API server.
    expect(await countApiServerRequests(env.cp.kubeConfig, 'tokenreviews')).toBe(reviewsBefore);
    await Promise.all([localApi.stop(), localStore.stop()]);
  });

  it('answers 504 when the secret store does not answer in time', async () => {
    // A listener that accepts connections and never replies.
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    try {
      const slowApi = await env.startCaller('api', {
        secretStoreUrl: `http://127.0.0.1:${port}`,
        env: { SECRET_STORE_TIMEOUT_MS: '1000' },
      });
      const res = await request(slowApi.url).get('/').expect(504);
      expect(res.body.message).toBe('the secret store did not answer in time');
      expect(readFileSync(slowApi.logFile, 'utf8')).toContain('no answer within 1000 ms');
      await slowApi.stop();
    } finally {
      silent.close();
    }
  });
});
