import { Controller, Get, type ModuleMetadata, type Type, UseGuards } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { AllowNamespaces, Audience, K8sAuthModule, ServiceAccountGuard, TOKEN_AUTHENTICATOR } from '@k8s-auth/nestjs';
import { fakeTokenAuthenticator, RecordingLogger } from '@k8s-auth/nestjs/testing';
import { ReportsModule } from '../src/reports/reports.module';

// The usual mistake: routes say who may call them, but no ServiceAccountGuard covers them (the root module lost its
// APP_GUARD, a controller lacks @UseGuards). Start-up stops and names them, rather than serve them to anyone.

@Controller('orders')
@Audience('orders')
@AllowNamespaces('shop')
class OrdersController {
  @Get()
  list() {
    return [];
  }

  @Get('mine')
  @UseGuards(ServiceAccountGuard)
  mine() {
    return [];
  }
}

/** What `app.init()` of these modules and controllers throws, or undefined; no API server, no credentials. */
async function initError(imports: ModuleMetadata['imports'], controllers: Type[] = [], logger = new RecordingLogger()) {
  const moduleRef = await Test.createTestingModule({ imports, controllers })
    .overrideProvider(TOKEN_AUTHENTICATOR)
    .useValue(fakeTokenAuthenticator({ identities: {} }))
    .compile();
  const app = moduleRef.createNestApplication({ logger });
  try {
    await app.init();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await app.close();
  }
}

describe('a route that declares its callers but that no ServiceAccountGuard covers', () => {
  it("stops app.init(), naming the route: the app's ReportsModule without the root module's APP_GUARD", async () => {
    const message = await initError([K8sAuthModule.forRoot({ audiences: ['reports'] }), ReportsModule]);
    expect(message).toContain('no ServiceAccountGuard covers them');
    expect(message).toContain('[GET /reports/summary] ReportsController.summary');
  });

  it('names each route no guard covers, and not those @UseGuards covers', async () => {
    const message = await initError([K8sAuthModule.forRoot({})], [OrdersController]);
    expect(message).toContain('1 route(s) declare who may call them');
    expect(message).toContain('[GET /orders] OrdersController.list');
    expect(message).not.toContain('OrdersController.mine');
  });

  it("only warns with unguardedRoutes: 'warn', for an app that guards them another way", async () => {
    const logger = new RecordingLogger();
    expect(await initError([K8sAuthModule.forRoot({ unguardedRoutes: 'warn' })], [OrdersController], logger)).toBe(
      undefined,
    );
    expect(logger.text()).toContain('[GET /orders] OrdersController.list');
  });
});
