import type { INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test, type TestingModule } from '@nestjs/testing';
import {
  bindClusterRole,
  type ControlPlane,
  createServiceAccount,
  kubeConfigFor,
  mintServiceAccountToken,
  type ServiceAccountRef,
  startControlPlane,
} from '@k8s-auth/nestjs/testing';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';

const REPORTS: ServiceAccountRef = { namespace: 'reports', name: 'reports' }; // this service
const API: ServiceAccountRef = { namespace: 'api', name: 'api' }; // the caller it lets in
const DATA_STORE: ServiceAccountRef = { namespace: 'data-store', name: 'data-store' }; // a caller it does not

let cp: ControlPlane;
let dir: string;
let AppModule: typeof import('../src/app.module').AppModule;
let secretStore: Server;
const secretStoreSaw: IncomingHttpHeaders[] = [];
let outgoingToken: string;

beforeAll(async () => {
  cp = await startControlPlane();
  for (const account of [REPORTS, API, DATA_STORE]) await createServiceAccount(cp.kubeConfig, account);
  // The service reviews its callers' tokens as itself, so it may create TokenReviews.
  await bindClusterRole(cp.kubeConfig, REPORTS, 'system:auth-delegator');
  dir = mkdtempSync(join(tmpdir(), 'k8s-auth-consumer-'));
  writeFileSync(join(dir, 'kubeconfig'), (await kubeConfigFor(cp.kubeConfig, REPORTS)).exportConfig());
  // What the kubelet would project into the pod: a token of this service for the secret store.
  outgoingToken = (await mintServiceAccountToken(cp.kubeConfig, REPORTS, { audiences: ['secret-store'] })).token;
  writeFileSync(join(dir, 'secret-store-token'), outgoingToken);
  // The secret store, as a stand-in that records the headers it gets.
  secretStore = createServer((req, res) => {
    secretStoreSaw.push(req.headers);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ status: 'ok' }));
  });
  await new Promise<void>((resolve) => secretStore.listen(0, '127.0.0.1', resolve));

  process.env.KUBECONFIG = join(dir, 'kubeconfig');
  process.env.SECRET_STORE_TOKEN_FILE = join(dir, 'secret-store-token');
  process.env.SECRET_STORE_URL = `http://127.0.0.1:${(secretStore.address() as AddressInfo).port}`;
  // Loaded only now: the modules read their environment when they are loaded, as in production.
  ({ AppModule } = await import('../src/app.module'));
});

afterAll(async () => {
  secretStore?.close();
  await cp?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const adapters: [string, (moduleRef: TestingModule) => Promise<INestApplication>][] = [
  ['Express', async (moduleRef) => moduleRef.createNestApplication({ logger: ['error'] }).init()],
  [
    'Fastify',
    async (moduleRef) => {
      const app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: ['error'] });
      await app.init();
      await app.getHttpAdapter().getInstance().ready();
      return app;
    },
  ],
];

describe.each(adapters)('on %s', (_platform, start) => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await start(await Test.createTestingModule({ imports: [AppModule] }).compile());
  });
  afterAll(() => app?.close());

  async function tokenOf(account: ServiceAccountRef, audience: string): Promise<string> {
    return (await mintServiceAccountToken(cp.kubeConfig, account, { audiences: [audience] })).token;
  }

  it('lets api:api in, and calls the secret store with its own token', async () => {
    secretStoreSaw.length = 0;
    const res = await request(app.getHttpServer())
      .get('/reports/summary')
      .set('Authorization', `Bearer ${await tokenOf(API, 'reports')}`)
      .expect(200);
    expect(res.body).toEqual({ for: 'system:serviceaccount:api:api', secretStore: { status: 'ok' } });
    expect(secretStoreSaw.map((headers) => headers.authorization)).toEqual([`Bearer ${outgoingToken}`]);
  });

  it('answers 401 without a token', async () => {
    const res = await request(app.getHttpServer()).get('/reports/summary').expect(401);
    expect(res.body.message).toBe('token required');
  });

  it('refuses another service account', async () => {
    const res = await request(app.getHttpServer())
      .get('/reports/summary')
      .set('Authorization', `Bearer ${await tokenOf(DATA_STORE, 'reports')}`)
      .expect(403);
    expect(res.body.message).toBe('caller not allowed');
  });

  it('refuses a token meant for another service', async () => {
    const res = await request(app.getHttpServer())
      .get('/reports/summary')
      .set('Authorization', `Bearer ${await tokenOf(API, 'secret-store')}`)
      .expect(403);
    expect(res.body.message).toBe('wrong audience');
  });
});
