import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { freePort } from '@k8s-auth/internal/testing';
import { RecordingLogger, type RecordingServer, startRecordingServer } from '@k8s-auth/nestjs/testing';
import { serviceAdapter } from '@k8s-auth/service-runtime';
import axios from 'axios';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { readApiConfig } from './api.config';
import { AppModule } from './app.module';

/**
 * A token shaped like the kubelet's: the projected-file source reads its `iat` and `exp` and the length of its ES256
 * signature, and checks nothing else (the store would).
 */
function tokenExpiringAt(exp: number): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = {
    sub: 'system:serviceaccount:api:api',
    aud: ['secret-store'],
    iat: Math.floor(Date.now() / 1000),
    exp,
  };
  return `${part({ alg: 'ES256', kid: 'test' })}.${part(claims)}.${randomBytes(64).toString('base64url')}`;
}

const UNUSED_KUBECONFIG = `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: 'https://127.0.0.1:1' } }]
users: [{ name: u, user: {} }]
contexts: [{ name: c, context: { cluster: c, user: u } }]
current-context: c
`;

describe('the api', () => {
  let dir: string;
  let tokenFile: string;
  let token: string;
  let store: RecordingServer;
  let elsewhere: RecordingServer;
  let logger: RecordingLogger;
  const apps: NestFastifyApplication[] = [];

  /** The api's module on the server it runs on (runService's adapter). */
  async function startApi(env: Record<string, string>): Promise<NestFastifyApplication> {
    const moduleRef = await Test.createTestingModule({
      imports: [AppModule.register(readApiConfig({ TOKEN_FILE: tokenFile, ...env }))],
    }).compile();
    const app = moduleRef.createNestApplication<NestFastifyApplication>(serviceAdapter(), { logger });
    apps.push(app);
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
    return app;
  }

  const carriesToken = (headers: IncomingHttpHeaders) => JSON.stringify(headers).includes(token);

  const kubeconfigBefore = process.env['KUBECONFIG'];
  beforeAll(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'api-spec-'));
    // The guard checks at start-up that it has credentials for the API server; no test here reaches it.
    process.env['KUBECONFIG'] = join(dir, 'kubeconfig');
    await fs.writeFile(process.env['KUBECONFIG'], UNUSED_KUBECONFIG);
    tokenFile = join(dir, 'secret-store-token');
    token = tokenExpiringAt(Math.floor(Date.now() / 1000) + 600);
    await fs.writeFile(tokenFile, token);
    store = await startRecordingServer('127.0.0.1', 'Hello from secret store');
    elsewhere = await startRecordingServer('127.0.0.2', 'Hello from secret store');
  });
  afterAll(async () => {
    if (kubeconfigBefore === undefined) delete process.env['KUBECONFIG'];
    else process.env['KUBECONFIG'] = kubeconfigBefore;
    await Promise.all([store.close(), elsewhere.close()]);
    await fs.rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    logger = new RecordingLogger();
    for (const o of [store, elsewhere]) {
      o.seen.length = 0;
      o.respond = (_req, res) => res.end('Hello from secret store');
    }
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  it.each(['authorization', 'x-client-id'])(
    "forwards the store's answer, having sent its token in %s",
    async (header) => {
      const app = await startApi({ SECRET_STORE_URL: store.url, TOKEN_HEADER: header });
      const res = await request(app.getHttpServer()).get('/').expect(200);
      expect(res.text).toBe('Hello from secret store');
      expect(store.seen[0].headers[header]).toBe(header === 'authorization' ? `Bearer ${token}` : token);
    },
  );

  it('forwards a refusal as the store gave it: status, content type and body', async () => {
    const refusal = JSON.stringify({ message: 'caller not allowed', error: 'Forbidden', statusCode: 403 });
    store.respond = (_req, res) =>
      res.writeHead(403, { 'content-type': 'application/json; charset=utf-8' }).end(refusal);
    const app = await startApi({ SECRET_STORE_URL: store.url });
    const res = await request(app.getHttpServer()).get('/').expect(403);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.text).toBe(refusal);
  });

  describe.each([302, 307])('when the store answers %i to another origin', (status) => {
    it.each(['authorization', 'x-client-id'])(
      'answers 502, and the other origin receives nothing (token in %s)',
      async (header) => {
        elsewhere.respond = (_req, res) => res.end('the other origin’s body');
        store.respond = (_req, res) => res.writeHead(status, { location: `${elsewhere.url}/` }).end('moved');
        const app = await startApi({ SECRET_STORE_URL: store.url, TOKEN_HEADER: header });
        const res = await request(app.getHttpServer()).get('/').expect(502);
        expect(res.body.message).toBe('the secret store gave an unexpected answer');
        expect(res.text).not.toContain(elsewhere.url);
        expect(elsewhere.seen).toEqual([]);
        expect(logger.text()).toContain(`answered ${status}`);
      },
    );
  });

  it("leaves axios's default instance alone: no token on its requests", async () => {
    await startApi({ SECRET_STORE_URL: store.url, TOKEN_HEADER: 'x-client-id' });
    await axios.get(`${elsewhere.url}/`);
    await axios.get(`${store.url}/`);
    expect(elsewhere.seen).toHaveLength(1);
    expect([...elsewhere.seen, ...store.seen].filter((s) => carriesToken(s.headers))).toEqual([]);
  });

  it('answers 502 without naming the store or the error when the store cannot be reached; the log has both', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const app = await startApi({ SECRET_STORE_URL: url });
    const res = await request(app.getHttpServer()).get('/').expect(502);
    expect(res.body.message).toBe('the secret store cannot be reached');
    expect(res.text).not.toContain(url.slice('http://'.length));
    expect(res.text).not.toContain('ECONNREFUSED');
    expect(logger.text()).toContain(url);
    expect(logger.text()).toContain('ECONNREFUSED');
    expect(logger.text()).not.toContain(token);
  });

  it('answers 504 without naming the store or the error when the store does not answer in time', async () => {
    // Reads what it is sent and never answers; reading lets it see the api close the connection.
    const silent: TcpServer = createTcpServer((socket) => socket.resume());
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    try {
      const app = await startApi({ SECRET_STORE_URL: url, SECRET_STORE_TIMEOUT_MS: '300' });
      const res = await request(app.getHttpServer()).get('/').expect(504);
      expect(res.body.message).toBe('the secret store did not answer in time');
      expect(res.text).not.toContain(url.slice('http://'.length));
      expect(res.text).not.toMatch(/timeout|300/);
      expect(logger.text()).toContain(url);
    } finally {
      await new Promise((r) => silent.close(r));
    }
  });

  it("says 'token unavailable' in /readyz and GET / without the token file's path; the log has the path", async () => {
    const expiringFile = join(dir, 'expiring-token');
    const exp = Math.floor(Date.now() / 1000) + 2;
    await fs.writeFile(expiringFile, tokenExpiringAt(exp));
    const app = await startApi({ SECRET_STORE_URL: store.url, TOKEN_FILE: expiringFile });
    await new Promise((r) => setTimeout(r, exp * 1000 + 100 - Date.now()));

    const ready = await request(app.getHttpServer()).get('/readyz').expect(503);
    expect(ready.body.error['secret-store-token']).toEqual({ status: 'down', message: 'token unavailable' });
    const root = await request(app.getHttpServer()).get('/').expect(503);
    expect(root.body.message).toBe('token unavailable');
    for (const body of [ready.text, root.text]) {
      expect(body).not.toContain(dir);
      expect(body).not.toContain('expired');
    }
    expect(store.seen).toEqual([]);
    expect(logger.text()).toContain(`${expiringFile} expired at`);
  });
});
