import { Controller, Get } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import {
  AllowServiceAccounts,
  K8sAuthModule,
  type AuthenticationResult,
  ServiceAccountGuard,
  TOKEN_AUTHENTICATOR,
} from '@k8s-auth/nestjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, register, Registry } from 'prom-client';
import request from 'supertest';
import { MetricsModule } from './metrics.module';
import { serviceAdapter } from './service-adapter';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';

@Controller()
class GuardedController {
  @Get('guarded')
  @AllowServiceAccounts('api:api')
  guarded() {
    return 'ok';
  }
}

/** Accepts `TOKEN` only, as api:api. */
const authenticator = {
  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    if (token !== TOKEN) return { accepted: false, reason: 'invalid token' };
    return {
      accepted: true,
      caller: {
        username: 'system:serviceaccount:api:api',
        namespace: 'api',
        serviceAccount: 'api',
        groups: [],
        audiences: [...audiences],
      },
    };
  },
};

// The guard checks at start-up that it has credentials for the API server; the fake authenticator never uses them.
const KUBECONFIG = `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: 'https://127.0.0.1:1' } }]
users: [{ name: u, user: {} }]
contexts: [{ name: c, context: { cluster: c, user: u } }]
current-context: c
`;

async function start(
  kubeconfig: string,
  modules: { metrics?: Registry; serve?: Registry },
): Promise<NestFastifyApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      K8sAuthModule.forRoot({ isGlobal: true, audiences: ['secret-store'], kubeconfig, metrics: modules.metrics }),
      MetricsModule.forRoot({ registry: modules.serve }),
    ],
    controllers: [GuardedController],
    providers: [{ provide: APP_GUARD, useClass: ServiceAccountGuard }],
  })
    .overrideProvider(TOKEN_AUTHENTICATOR)
    .useValue(authenticator)
    .compile();
  const app = moduleRef.createNestApplication<NestFastifyApplication>(serviceAdapter(), { logger: false });
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
  return app;
}

describe('MetricsModule', () => {
  let app: NestFastifyApplication | undefined;
  let dir: string;
  let kubeconfig: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'metrics-spec-'));
    kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, KUBECONFIG);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it("serves the guard's metrics in Prometheus's text format, behind the guard but without a token", async () => {
    const registry = new Registry();
    app = await start(kubeconfig, { metrics: registry, serve: registry });
    await request(app.getHttpServer()).get('/guarded').expect(401);
    await request(app.getHttpServer()).get('/guarded').set('Authorization', `Bearer ${TOKEN}`).expect(200);

    const res = await request(app.getHttpServer()).get('/metrics').expect(200);
    expect(res.headers['content-type']).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
    expect(res.text).toContain('# TYPE k8s_auth_guard_decisions_total counter');
    expect(res.text).toContain('k8s_auth_guard_decisions_total{decision="unauthenticated"} 1');
    expect(res.text).toContain('k8s_auth_guard_decisions_total{decision="allowed"} 1');
    expect(res.text).not.toContain(TOKEN.slice(-16));
    // Node's process metrics, read from process.cpuUsage() at each scrape.
    expect(res.text).toMatch(/^process_cpu_user_seconds_total \d/m);
  });

  it("serves prom-client's global registry by default, where the library writes by default", async () => {
    const own = new Counter({ name: 'metrics_module_spec_total', help: 'a metric of the app itself' });
    own.inc(3);
    try {
      app = await start(kubeconfig, {});
      await request(app.getHttpServer()).get('/guarded').set('Authorization', `Bearer ${TOKEN}`).expect(200);
      const res = await request(app.getHttpServer()).get('/metrics').expect(200);
      expect(res.text).toContain('metrics_module_spec_total 3');
      expect(res.text).toContain('k8s_auth_guard_decisions_total{decision="allowed"} 1');
    } finally {
      register.clear();
    }
  });
});
