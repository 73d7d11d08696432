import { credentials, loadPackageDefinition, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
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
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HybridAppModule } from '../src/hybrid-app.module';
import { reportsGrpc } from '../src/reports/reports.grpc';

// The gRPC method of the hybrid app (HTTP and connectMicroservice, as main.ts), against a real API server.
const REPORTS: ServiceAccountRef = { namespace: 'reports', name: 'reports' };
const API: ServiceAccountRef = { namespace: 'api', name: 'api' };
const DATA_STORE: ServiceAccountRef = { namespace: 'data-store', name: 'data-store' };

type Summary = (
  request: object,
  metadata: Metadata,
  callback: (err: ServiceError | null, reply?: { for: string }) => void,
) => void;

let cp: ControlPlane;
let dir: string;
let app: INestApplication;
let client: { Summary: Summary; close(): void };

const tokenOf = async (account: ServiceAccountRef, audience: string) =>
  (await mintServiceAccountToken(cp.kubeConfig, account, { audiences: [audience] })).token;

/** The call's reply, or its status code and details. */
function summary(token?: string): Promise<{ for: string } | { code: number; details: string }> {
  const metadata = new Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) =>
    client.Summary({}, metadata, (err, reply) =>
      resolve(err ? { code: err.code, details: err.details } : (reply as { for: string })),
    ),
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  cp = await startControlPlane();
  for (const account of [REPORTS, API, DATA_STORE]) await createServiceAccount(cp.kubeConfig, account);
  await bindClusterRole(cp.kubeConfig, REPORTS, 'system:auth-delegator');
  dir = mkdtempSync(join(tmpdir(), 'k8s-auth-consumer-grpc-'));
  writeFileSync(join(dir, 'kubeconfig'), (await kubeConfigFor(cp.kubeConfig, REPORTS)).exportConfig());
  writeFileSync(join(dir, 'secret-store-token'), await tokenOf(REPORTS, 'secret-store'));
  process.env.KUBECONFIG = join(dir, 'kubeconfig');
  process.env.SECRET_STORE_TOKEN_FILE = join(dir, 'secret-store-token');
  process.env.SECRET_STORE_URL = 'http://127.0.0.1:9'; // not called here

  const url = `127.0.0.1:${await freePort()}`;
  const moduleRef = await Test.createTestingModule({ imports: [HybridAppModule] }).compile();
  app = moduleRef.createNestApplication();
  app.connectMicroservice(reportsGrpc(url));
  await app.startAllMicroservices();
  await app.init();
  const proto = loadPackageDefinition(loadSync(join(__dirname, '../src/reports/reports.proto'))) as unknown as {
    reports: { Reports: new (url: string, creds: unknown) => typeof client };
  };
  client = new proto.reports.Reports(url, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await app?.close();
  await cp?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('lets api:api call the gRPC method, as @Caller()', async () => {
  expect(await summary(await tokenOf(API, 'reports'))).toEqual({ for: 'system:serviceaccount:api:api' });
});

it('refuses no token (UNAUTHENTICATED) and another service account (PERMISSION_DENIED)', async () => {
  expect(await summary()).toEqual({ code: 16, details: 'token required' });
  expect(await summary(await tokenOf(DATA_STORE, 'reports'))).toEqual({ code: 7, details: 'caller not allowed' });
});
