import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { AppModule } from '../src/app.module';

// The auth decisions themselves, against a real API server (etcd and kube-apiserver on loopback).
const REPORTS: ServiceAccountRef = { namespace: 'reports', name: 'reports' }; // this service
const API: ServiceAccountRef = { namespace: 'api', name: 'api' }; // the caller it lets in
const DATA_STORE: ServiceAccountRef = { namespace: 'data-store', name: 'data-store' }; // a caller it does not

describe('GET /reports/summary, against a real API server', () => {
  let cp: ControlPlane;
  let dir: string;
  let app: INestApplication;
  const tokenOf = async (account: ServiceAccountRef, audience = 'reports') =>
    (await mintServiceAccountToken(cp.kubeConfig, account, { audiences: [audience] })).token;
  const get = (token?: string) => {
    const req = request(app.getHttpServer()).get('/reports/summary');
    return token ? req.set('Authorization', `Bearer ${token}`) : req;
  };

  beforeAll(async () => {
    cp = await startControlPlane();
    for (const account of [REPORTS, API, DATA_STORE]) await createServiceAccount(cp.kubeConfig, account);
    // The service reviews its callers' tokens as itself, so it may create TokenReviews.
    await bindClusterRole(cp.kubeConfig, REPORTS, 'system:auth-delegator');
    dir = mkdtempSync(join(tmpdir(), 'reports-'));
    writeFileSync(join(dir, 'kubeconfig'), (await kubeConfigFor(cp.kubeConfig, REPORTS)).exportConfig());
    process.env.KUBECONFIG = join(dir, 'kubeconfig'); // read as the app starts
    writeFileSync(join(dir, 'secret-store-token'), await tokenOf(REPORTS, 'secret-store')); // outgoing
    process.env.SECRET_STORE_TOKEN_FILE = join(dir, 'secret-store-token'); // outgoing

    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication();
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
    await cp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lets api:api in', async () => {
    await get(await tokenOf(API)).expect(200, { for: 'system:serviceaccount:api:api' });
  });

  it('refuses no token (401), another service account and a token meant for another service (403)', async () => {
    expect((await get().expect(401)).body.message).toBe('token required');
    expect((await get(await tokenOf(DATA_STORE)).expect(403)).body.message).toBe('caller not allowed');
    expect((await get(await tokenOf(API, 'secret-store')).expect(403)).body.message).toBe('wrong audience');
  });
});
