import type { INestApplication } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import {
  bindClusterRole,
  type ControlPlane,
  createServiceAccount,
  kubeConfigFor,
  mintServiceAccountToken,
  type RecordingServer,
  type ServiceAccountRef,
  startControlPlane,
  startRecordingServer,
} from '@k8s-auth/nestjs/testing';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { AppModule } from '../src/app.module';

// The outgoing token, and the guard on Express and on Fastify, against a real API server (auth.e2e-spec.ts is the
// guard alone, as the README shows it).
const REPORTS: ServiceAccountRef = { namespace: 'reports', name: 'reports' }; // this service
const API: ServiceAccountRef = { namespace: 'api', name: 'api' }; // the caller it lets in
const DATA_STORE: ServiceAccountRef = { namespace: 'data-store', name: 'data-store' }; // a caller it does not

let cp: ControlPlane;
let dir: string;
let secretStore: RecordingServer;
let outgoingToken: string;
const tokenOf = async (account: ServiceAccountRef, audience: string) =>
  (await mintServiceAccountToken(cp.kubeConfig, account, { audiences: [audience] })).token;

beforeAll(async () => {
  cp = await startControlPlane();
  for (const account of [REPORTS, API, DATA_STORE]) await createServiceAccount(cp.kubeConfig, account);
  // The service reviews its callers' tokens as itself, so it may create TokenReviews.
  await bindClusterRole(cp.kubeConfig, REPORTS, 'system:auth-delegator');
  dir = mkdtempSync(join(tmpdir(), 'k8s-auth-consumer-'));
  writeFileSync(join(dir, 'kubeconfig'), (await kubeConfigFor(cp.kubeConfig, REPORTS)).exportConfig());
  // What the kubelet would project into the pod: a token of this service for the secret store.
  outgoingToken = await tokenOf(REPORTS, 'secret-store');
  writeFileSync(join(dir, 'secret-store-token'), outgoingToken);
  secretStore = await startRecordingServer('127.0.0.1', '{"status":"ok"}'); // stands in for the secret store
  // Read as the app starts (forRootAsync, HttpModule.registerAsync).
  process.env.KUBECONFIG = join(dir, 'kubeconfig');
  process.env.SECRET_STORE_TOKEN_FILE = join(dir, 'secret-store-token');
  process.env.SECRET_STORE_URL = secretStore.url;
});

afterAll(async () => {
  await secretStore?.close();
  await cp?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const adapters: [string, () => FastifyAdapter | undefined][] = [
  ['Express', () => undefined],
  ['Fastify', () => new FastifyAdapter()],
];

describe.each(adapters)('on %s', (_platform, adapterFor) => {
  let app: INestApplication;
  const get = (path: string, token?: string) => {
    const req = request(app.getHttpServer()).get(path);
    return token ? req.set('Authorization', `Bearer ${token}`) : req;
  };

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const adapter = adapterFor();
    app = adapter ? moduleRef.createNestApplication(adapter) : moduleRef.createNestApplication();
    await app.init();
    await adapter?.getInstance().ready(); // Fastify: ready before supertest sends requests
  });
  afterAll(() => app?.close());

  it('lets api:api in, and calls the secret store with its own token', async () => {
    await get('/reports/summary', await tokenOf(API, 'reports')).expect(200, { for: 'system:serviceaccount:api:api' });
    secretStore.seen.length = 0;
    await get('/reports/secret-store/status', await tokenOf(API, 'reports')).expect(200, { status: 'ok' });
    expect(secretStore.seen.map((r) => r.headers.authorization)).toEqual([`Bearer ${outgoingToken}`]);
  });

  it('refuses no token (401), another service account and a token meant for another service (403)', async () => {
    expect((await get('/reports/summary').expect(401)).body.message).toBe('token required');
    const other = await get('/reports/summary', await tokenOf(DATA_STORE, 'reports')).expect(403);
    expect(other.body.message).toBe('caller not allowed');
    const misaddressed = await get('/reports/summary', await tokenOf(API, 'secret-store')).expect(403);
    expect(misaddressed.body.message).toBe('wrong audience');
  });
});
