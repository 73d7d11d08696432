import { Controller, Get, type INestApplication, Module, Param, UseGuards } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test, type TestingModuleBuilder } from '@nestjs/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import {
  AccessReviewer,
  AllowServiceAccounts,
  Audience,
  Caller,
  type CallerIdentity,
  K8sAuthModule,
  RequireAccess,
  ServiceAccountGuard,
  TOKEN_AUTHENTICATOR,
  TokenSources,
} from '../index';
import { fakeAccessReviewer, fakeToken, fakeTokenAuthenticator, fakeTokenSources } from './index';

// The test doubles boot an app with no API server and no credentials at all: no kubeconfig, no KUBECONFIG, no
// ~/.kube/config, not in a pod. What the API server decides is proven against the control plane elsewhere.

const API_TOKEN = fakeToken('api');
const DATA_STORE_TOKEN = fakeToken('data-store');
const FOR_ANOTHER_SERVICE = fakeToken('api, for another service');

@Controller('reports')
@Audience('reports')
@AllowServiceAccounts('api:api')
class ReportsController {
  constructor(private readonly tokens: TokenSources) {}

  @Get('summary')
  summary(@Caller() caller: CallerIdentity | undefined) {
    return { caller: caller ?? null };
  }

  @Get('outgoing')
  outgoing() {
    return { token: this.tokens.get('secret-store').token() };
  }

  @Get('by-name/:name')
  @RequireAccess({
    verb: 'get',
    group: 'reports.example.com',
    resource: 'reports',
    namespace: 'reports',
    name: { param: 'name' },
  })
  byName(@Param('name') name: string) {
    return { name };
  }
}

/** An app as users write it: the module with a projected token file that does not exist here, a global guard. */
@Module({
  imports: [K8sAuthModule.forRoot({ tokenSources: { 'secret-store': { file: '/nonexistent/secret-store-token' } } })],
  controllers: [ReportsController],
  providers: [{ provide: APP_GUARD, useExisting: ServiceAccountGuard }],
})
class AppModule {}

@Controller('plain')
@UseGuards(ServiceAccountGuard)
@Audience('reports')
@AllowServiceAccounts('api:api')
class UseGuardsController {
  @Get()
  // A guard a test put in place checks no caller: @Caller() would throw, as on any route the real guard did not run.
  plain() {
    return { served: true };
  }
}

/** Guarded with `@UseGuards`, no token sources. */
@Module({ imports: [K8sAuthModule.forRoot({})], controllers: [UseGuardsController] })
class UseGuardsModule {}

@Controller('global')
@Audience('reports')
@AllowServiceAccounts('api:api')
class GlobalGuardController {
  @Get()
  // A guard a test put in place checks no caller: @Caller() would throw, as on any route the real guard did not run.
  plain() {
    return { served: true };
  }
}

/** Guarded with a global guard, no token sources. */
@Module({
  imports: [K8sAuthModule.forRoot({})],
  controllers: [GlobalGuardController],
  providers: [{ provide: APP_GUARD, useExisting: ServiceAccountGuard }],
})
class GlobalGuardModule {}

const saved = { ...process.env };
let home: string;

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'k8s-auth-no-credentials-'));
  process.env['HOME'] = home;
  delete process.env['KUBECONFIG'];
  delete process.env['KUBERNETES_SERVICE_HOST'];
});

afterAll(() => {
  process.env = saved;
  rmSync(home, { recursive: true, force: true });
});

async function boot(builder: TestingModuleBuilder, fastify = false): Promise<INestApplication> {
  const moduleRef = await builder.compile();
  const adapter = fastify ? new FastifyAdapter() : undefined;
  const app = adapter
    ? moduleRef.createNestApplication(adapter, { logger: false })
    : moduleRef.createNestApplication({ logger: false });
  await app.init();
  if (adapter) await adapter.getInstance().ready();
  return app;
}

describe.each([
  ['Express', false],
  ['Fastify', true],
])('fakeTokenAuthenticator on %s', (_name, fastify) => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await boot(
      Test.createTestingModule({ imports: [AppModule] })
        .overrideProvider(TOKEN_AUTHENTICATOR)
        .useValue(
          fakeTokenAuthenticator({
            identities: {
              [API_TOKEN]: 'api:api',
              [DATA_STORE_TOKEN]: { serviceAccount: 'data-store:data-store', podName: 'data-store-0' },
              [FOR_ANOTHER_SERVICE]: { serviceAccount: 'api:api', audiences: ['secret-store'] },
            },
            audiences: ['reports'],
          }),
        )
        .overrideProvider(TokenSources)
        .useValue(fakeTokenSources({ 'secret-store': 'outgoing-test-token' }))
        .overrideProvider(AccessReviewer)
        .useValue(
          fakeAccessReviewer(
            (_caller, check) => 'resourceAttributes' in check && check.resourceAttributes.name === 'mine',
          ),
        ),
      fastify,
    );
  });
  afterAll(() => app?.close());

  const get = (path: string, token?: string) => {
    const req = request(app.getHttpServer()).get(path);
    return token ? req.set('Authorization', `Bearer ${token}`) : req;
  };

  it('lets an allowed identity in, and gives it to @Caller()', async () => {
    const res = await get('/reports/summary', API_TOKEN).expect(200);
    expect(res.body.caller).toEqual({
      username: 'system:serviceaccount:api:api',
      namespace: 'api',
      serviceAccount: 'api',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:api', 'system:authenticated'],
      audiences: ['reports'],
    });
  });

  it('refuses another identity (403), a token it does not know (403) and no token (401)', async () => {
    expect((await get('/reports/summary', DATA_STORE_TOKEN).expect(403)).body.message).toBe('caller not allowed');
    expect((await get('/reports/summary', fakeToken('nobody')).expect(403)).body.message).toBe('invalid token');
    expect((await get('/reports/summary', FOR_ANOTHER_SERVICE).expect(403)).body.message).toBe('wrong audience');
    expect((await get('/reports/summary').expect(401)).body.message).toBe('token required');
  });

  it('gives the fixed outgoing token, and decides @RequireAccess with the function given', async () => {
    expect((await get('/reports/outgoing', API_TOKEN).expect(200)).body).toEqual({ token: 'outgoing-test-token' });
    await get('/reports/by-name/mine', API_TOKEN).expect(200);
    expect((await get('/reports/by-name/theirs', API_TOKEN).expect(403)).body.message).toBe('access denied by RBAC');
  });
});

describe('replacing the guard', () => {
  it('boots with overrideGuard, for @UseGuards(ServiceAccountGuard)', async () => {
    const app = await boot(
      Test.createTestingModule({ imports: [UseGuardsModule] })
        .overrideGuard(ServiceAccountGuard)
        .useValue({ canActivate: () => true }),
    );
    try {
      expect((await request(app.getHttpServer()).get('/plain').expect(200)).body).toEqual({ served: true });
    } finally {
      await app.close();
    }
  });

  it('boots with overrideProvider, for { provide: APP_GUARD, useExisting: ServiceAccountGuard }', async () => {
    const app = await boot(
      Test.createTestingModule({ imports: [GlobalGuardModule] })
        .overrideProvider(ServiceAccountGuard)
        .useValue({ canActivate: () => true }),
    );
    try {
      expect((await request(app.getHttpServer()).get('/global').expect(200)).body).toEqual({ served: true });
    } finally {
      await app.close();
    }
  });
});

describe('what still needs credentials', () => {
  it('stops start-up without credentials when nothing is replaced, naming the test double', async () => {
    await expect(boot(Test.createTestingModule({ imports: [GlobalGuardModule] }))).rejects.toThrow(
      /Cannot load a Kubernetes client configuration .* found no credentials: .*Tests that need no API server replace the authenticator: overrideProvider\(TOKEN_AUTHENTICATOR\)/,
    );
  });

  it('stops start-up when @RequireAccess routes still ask the real access reviewer', async () => {
    const builder = Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(TOKEN_AUTHENTICATOR)
      .useValue(fakeTokenAuthenticator({ identities: { [API_TOKEN]: 'api:api' } }))
      .overrideProvider(TokenSources)
      .useValue(fakeTokenSources({ 'secret-store': 'outgoing-test-token' }));
    await expect(boot(builder)).rejects.toThrow('found no credentials');
  });
});

describe('checks of the test doubles', () => {
  it('refuses a token the guard would refuse before asking, and a caller that is not namespace:name', () => {
    expect(() => fakeTokenAuthenticator({ identities: { 'test-token': 'api:api' } })).toThrow(
      'the guard refuses the token of api:api before asking an authenticator (token is not a JWT',
    );
    expect(() => fakeTokenAuthenticator({ identities: { [API_TOKEN]: 'api' } })).toThrow(
      '"api" is not a ServiceAccount as "namespace:name"',
    );
  });

  it('makes one token per label, each a well-formed JWS', () => {
    expect(fakeToken('api')).toBe(API_TOKEN);
    expect(fakeToken('api')).not.toBe(DATA_STORE_TOKEN);
    expect(API_TOKEN).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it('names the token sources it has when asked for another one', () => {
    expect(() => fakeTokenSources({ 'secret-store': 'x' }).get('other')).toThrow(
      "No token source named 'other' (configured: secret-store)",
    );
  });
});
