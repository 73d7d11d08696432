import { All, Controller, Delete, Get, Injectable, Post, UseGuards } from '@nestjs/common';
import { APP_GUARD, DiscoveryModule, DiscoveryService, MetadataScanner } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { RequireAccess } from '../authz/require-access.decorator';
import { type DiscoveredRoute, discoverRoutes } from './discovered-routes';
import { AllowNamespaces, Audience, PublicRoute } from './k8s-auth.decorators';

// Which routes a guard covers and how they are named, read from the decorators alone: no request is made.

@Injectable()
class TheGuard {
  canActivate() {
    return true;
  }
}

@Controller(['/v1/items/', 'items'])
@Audience('store')
class ItemsController {
  @Get(':id')
  read() {
    return 'read';
  }

  @Post()
  @UseGuards(TheGuard)
  create() {
    return 'created';
  }

  @Get('healthz')
  @PublicRoute()
  health() {
    return 'ok';
  }

  /** Not a route: no path of its own. */
  helper() {
    return 'helper';
  }
}

@Controller()
@UseGuards(TheGuard)
class RootController {
  @All()
  any() {
    return 'any';
  }

  @Delete(['a', 'b/:name'])
  @RequireAccess({ path: '/x', verb: 'delete' })
  remove() {
    return 'removed';
  }
}

@Controller('plain')
class PlainController {
  @Get()
  @AllowNamespaces('team-a')
  listed() {
    return 'listed';
  }

  @Get('nothing')
  nothing() {
    return 'nothing';
  }
}

async function routes(
  global: boolean,
): Promise<Record<string, Omit<DiscoveredRoute, 'controller' | 'handler' | 'transport'>>> {
  const moduleRef = await Test.createTestingModule({
    imports: [DiscoveryModule],
    controllers: [ItemsController, RootController, PlainController],
    providers: global ? [{ provide: APP_GUARD, useClass: TheGuard }] : [],
  }).compile();
  const found = discoverRoutes(moduleRef.get(DiscoveryService), moduleRef.get(MetadataScanner), (g) => {
    return g === TheGuard || g instanceof TheGuard;
  });
  await moduleRef.close();
  return Object.fromEntries(
    found.map((route) => [
      route.where,
      {
        where: route.where,
        path: route.path,
        guarded: route.guarded,
        public: route.public,
        declaresPolicy: route.declaresPolicy,
      },
    ]),
  );
}

describe('discoverRoutes', () => {
  it('names each route by its method and every path, and says how the guard covers it', async () => {
    expect(await routes(false)).toEqual({
      'ItemsController.read': {
        where: 'ItemsController.read',
        path: 'GET /v1/items/:id, /items/:id',
        guarded: false,
        public: false,
        declaresPolicy: true,
      },
      'ItemsController.create': {
        where: 'ItemsController.create',
        path: 'POST /v1/items, /items',
        guarded: 'local',
        public: false,
        declaresPolicy: true,
      },
      'ItemsController.health': {
        where: 'ItemsController.health',
        path: 'GET /v1/items/healthz, /items/healthz',
        guarded: false,
        public: true,
        declaresPolicy: true,
      },
      'RootController.any': {
        where: 'RootController.any',
        path: 'ALL /',
        guarded: 'local',
        public: false,
        declaresPolicy: false,
      },
      'RootController.remove': {
        where: 'RootController.remove',
        path: 'DELETE /a, /b/:name',
        guarded: 'local',
        public: false,
        declaresPolicy: true,
      },
      'PlainController.listed': {
        where: 'PlainController.listed',
        path: 'GET /plain',
        guarded: false,
        public: false,
        declaresPolicy: true,
      },
      'PlainController.nothing': {
        where: 'PlainController.nothing',
        path: 'GET /plain/nothing',
        guarded: false,
        public: false,
        declaresPolicy: false,
      },
    });
  });

  it('counts an APP_GUARD for every route, and @UseGuards before it', async () => {
    const found = await routes(true);
    expect(Object.fromEntries(Object.entries(found).map(([where, route]) => [where, route.guarded]))).toEqual({
      'ItemsController.read': 'global',
      'ItemsController.create': 'local',
      'ItemsController.health': 'global',
      'RootController.any': 'local',
      'RootController.remove': 'local',
      'PlainController.listed': 'global',
      'PlainController.nothing': 'global',
    });
  });
});
