import { Controller, Get, type INestApplication, Injectable, Module, Post, type Type, UseGuards } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { RecordingLogger } from '../../testing/recording-logger';
import type { AccessAttributes } from '../authz/access-check';
import { type AccessDecision, AccessReviewer } from '../authz/access-reviewer';
import {
  accepted,
  type CallerIdentity,
  refused,
  type AuthenticationResult,
  AuthenticationUnavailableError,
  type RefusalReason,
  TOKEN_AUTHENTICATOR,
} from '../authn/authentication.types';
import { Caller } from './caller.decorator';
import { AllowNamespaces, AllowServiceAccounts, Audience, PublicRoute } from './k8s-auth.decorators';
import type { K8sAuthModuleOptions } from '../module/k8s-auth-options.interface';
import { K8sAuthModule } from '../module/k8s-auth.module';
import { KubernetesApiClient } from '../kube/kubernetes-api.client';
import { tokenFingerprint } from '../observability/log-safe';
import { resolveOptions } from '../module/resolved-options';
import { RequireAccess } from '../authz/require-access.decorator';
import { PolicyConfigurationError } from './route-policy';
import { ServiceAccountGuard } from './service-account.guard';

// The guard's decisions with the API server replaced by fakes, on Express and on Fastify; the real thing is in the
// integration specs.

/** A well-formed token: the fake authenticator decides by the caller it is set to. */
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';

const STORE = 'secret-store.example.com';

@Controller()
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@RequireAccess({ verb: 'get', group: STORE, resource: 'stores', namespace: 'secret-store' })
class StoreController {
  @Get('secrets/:name')
  @RequireAccess({ verb: 'get', group: STORE, resource: 'secrets', namespace: 'secret-store', name: { param: 'name' } })
  @RequireAccess({ path: '/audit', verb: 'post' })
  read() {
    return 'secret';
  }
}

@Controller('listed')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
@AllowNamespaces('reports')
class ListedController {
  /** The controller's allowlist still applies to a route that only adds RBAC checks. */
  @Get()
  @RequireAccess({ path: '/listed', verb: 'get' })
  read() {
    return 'listed';
  }
}

@Controller('who')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class WhoController {
  @Get()
  who(@Caller() caller: CallerIdentity | undefined) {
    return { username: caller?.username ?? null };
  }

  @Get('twice')
  twice(@Caller() _first: unknown, @Caller() caller: CallerIdentity | undefined) {
    return { username: caller?.username ?? null };
  }
}

@Controller('typo')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
class TypoController {
  @Get()
  @RequireAccess({ verb: 'get', resource: 'secrets', names: 'x' } as never)
  typo() {
    return 'typo';
  }
}

@Controller('no-such-param')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
class NoSuchParamController {
  @Get()
  @RequireAccess({ verb: 'get', resource: 'secrets', name: { param: 'name' } })
  noSuchParam() {
    return 'oops';
  }
}

@Controller('nothing')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
class NothingController {
  @Get()
  open() {
    return 'open';
  }
}

/** A handler defined once and inherited: each subclass is its own route with its own policy. */
class BaseController {
  @Get('x')
  x(@Caller() caller: CallerIdentity) {
    return { username: caller.username };
  }
}

@Controller('a')
@UseGuards(ServiceAccountGuard)
@Audience('team-a')
@AllowServiceAccounts('team-a:svc')
@RequireAccess({ path: '/a', verb: 'get' })
class TeamAController extends BaseController {}

@Controller('b')
@UseGuards(ServiceAccountGuard)
@Audience('team-b')
@AllowServiceAccounts('team-b:svc')
@RequireAccess({ path: '/b', verb: 'get' })
class TeamBController extends BaseController {}

@Controller('mutate')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class MutatingController {
  @Get()
  mutate(@Caller() caller: CallerIdentity) {
    const attempts = {
      groups: () => (caller.groups as string[]).push('system:masters'),
      namespace: () => ((caller as { namespace: string }).namespace = 'kube-system'),
      audiences: () => (caller.audiences as string[]).push('other'),
    };
    const refusedChanges = Object.entries(attempts)
      .filter(([, attempt]) => {
        try {
          attempt();
          return false;
        } catch {
          return true;
        }
      })
      .map(([name]) => name);
    return { refusedChanges, caller };
  }
}

/** Declares who may call, but names no guard: nobody enforces it. */
@Controller('forgot')
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class ForgotController {
  @Get()
  read(@Caller() caller: CallerIdentity) {
    return { username: caller.username };
  }

  @Post('write')
  write() {
    return 'written';
  }

  @Get('healthz')
  @PublicRoute()
  health(@Caller() caller: CallerIdentity | undefined) {
    return { username: caller?.username ?? null };
  }
}

/** Decorated route by route; the undecorated route declares nothing to enforce. */
@Controller('forgot-too')
class ForgotRoutesController {
  @Get('secrets/:name')
  @RequireAccess({ verb: 'get', resource: 'secrets', name: { param: 'name' } })
  read() {
    return 'secret';
  }

  @Get('plain')
  plain(@Caller() caller: CallerIdentity) {
    return { username: caller.username };
  }
}

@Injectable()
class AuditingGuard extends ServiceAccountGuard {}

/** Guarded by a subclass of the guard. */
@Controller('sub')
@UseGuards(AuditingGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class SubclassGuardedController {
  @Get()
  read(@Caller() caller: CallerIdentity) {
    return { username: caller.username };
  }
}

/** Guarded on one handler only; the other is open. */
@Controller('half')
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class HalfGuardedController {
  @Get('guarded')
  @UseGuards(ServiceAccountGuard)
  guarded() {
    return 'guarded';
  }

  @Get('open')
  open() {
    return 'open';
  }
}

const callerOf = (namespace: string, name: string, audiences = ['secret-store']): CallerIdentity => ({
  username: `system:serviceaccount:${namespace}:${name}`,
  namespace,
  serviceAccount: name,
  groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
  audiences,
});
const API_CALLER = callerOf('api', 'api');

/** Accepts every token as `caller`, for any audience, and records the audiences asked for. */
class FakeAuthenticator {
  caller: CallerIdentity | undefined = API_CALLER;
  /** Why a token is refused without a caller. */
  refusal: RefusalReason = 'invalid token';
  readonly audiencesAsked: string[][] = [];
  async authenticate(_token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    this.audiencesAsked.push([...audiences]);
    if (!this.caller) return refused(this.refusal);
    return accepted({ ...this.caller, audiences: [...audiences] });
  }
}

class FakeAccessReviewer {
  readonly asked: string[] = [];
  decide: (described: string) => AccessDecision | Error = () => ({ allowed: true });
  async review(_caller: CallerIdentity, attributes: AccessAttributes): Promise<AccessDecision> {
    const described =
      'resourceAttributes' in attributes
        ? `${attributes.resourceAttributes.verb} ${attributes.resourceAttributes.resource}${attributes.resourceAttributes.name ? `/${attributes.resourceAttributes.name}` : ''}`
        : `${attributes.nonResourceAttributes.verb} ${attributes.nonResourceAttributes.path}`;
    this.asked.push(described);
    const decision = this.decide(described);
    if (decision instanceof Error) throw decision;
    return decision;
  }
}

const ADAPTERS: Array<[string, () => FastifyAdapter | undefined]> = [
  ['Express', () => undefined],
  ['Fastify', () => new FastifyAdapter()],
];

/** An app of `controllers` (or of `imports`) with the fakes, on the given adapter. */
async function createApp(
  adapter: FastifyAdapter | undefined,
  logger: RecordingLogger,
  fakes: { tokens?: FakeAuthenticator; access: FakeAccessReviewer; api?: KubernetesApiClient },
  metadata: { controllers?: Type[]; imports?: Type[]; options?: K8sAuthModuleOptions },
): Promise<INestApplication> {
  let builder = Test.createTestingModule({
    imports: [
      K8sAuthModule.forRoot({ metrics: false, isGlobal: true, ...metadata.options }),
      ...(metadata.imports ?? []),
    ],
    controllers: metadata.controllers ?? [],
  })
    .overrideProvider(AccessReviewer)
    .useValue(fakes.access)
    .overrideProvider(KubernetesApiClient)
    .useValue(fakes.api ?? { checkConfiguration: () => undefined });
  // Without a fake, the module's own authenticator: the one that needs credentials at start-up.
  if (fakes.tokens) builder = builder.overrideProvider(TOKEN_AUTHENTICATOR).useValue(fakes.tokens);
  const moduleRef = await builder.compile();
  const app = adapter
    ? moduleRef.createNestApplication(adapter, { logger })
    : moduleRef.createNestApplication({ logger });
  await app.init();
  if (adapter) await adapter.getInstance().ready();
  return app;
}

describe.each(ADAPTERS)('ServiceAccountGuard on %s', (_name, adapterFor) => {
  let app: INestApplication;
  let tokens: FakeAuthenticator;
  let access: FakeAccessReviewer;
  const logger = new RecordingLogger();

  beforeEach(async () => {
    tokens = new FakeAuthenticator();
    access = new FakeAccessReviewer();
    app = await createApp(
      adapterFor(),
      logger,
      { tokens, access },
      {
        controllers: [
          StoreController,
          ListedController,
          WhoController,
          TeamAController,
          TeamBController,
          MutatingController,
        ],
      },
    );
  });

  afterEach(() => app.close());

  const get = (path: string) => request(app.getHttpServer()).get(path).set('Authorization', `Bearer ${TOKEN}`);

  it("asks about the controller's and the route's checks, all of them, with the route parameter", async () => {
    await get('/secrets/db').expect(200);
    expect(access.asked.sort()).toEqual(['get secrets/db', 'get stores', 'post /audit']);
  });

  it.each(['get stores', 'get secrets/db', 'post /audit'])('refuses with 403 when RBAC denies %s', async (denied) => {
    access.decide = (d) => ({ allowed: d !== denied });
    const res = await get('/secrets/db').expect(403);
    expect(res.body).toEqual({ statusCode: 403, message: 'access denied by RBAC', error: 'Forbidden' });
  });

  it('answers 503 with Retry-After when a review cannot be made', async () => {
    access.decide = (d) => (d === 'get stores' ? new AuthenticationUnavailableError('down') : { allowed: true });
    const res = await get('/secrets/db').expect(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.message).toBe('authorization is unavailable, retry later');
  });

  it('answers 403 rather than 503 when one check is denied and another cannot be made', async () => {
    access.decide = (d) => (d === 'get stores' ? new AuthenticationUnavailableError('down') : { allowed: false });
    await get('/secrets/db').expect(403);
  });

  it('answers 400 to a route parameter that is not a Kubernetes name, before any review', async () => {
    const res = await get('/secrets/Not_A_Name').expect(400);
    expect(res.body.message).toBe('route parameter "name" is not a valid name');
    expect(access.asked).toEqual([]);
  });

  it('keeps a controller allowlist on a route that only adds RBAC checks', async () => {
    await get('/listed').expect(200);
    tokens.caller = { ...API_CALLER, username: 'system:serviceaccount:other:api', namespace: 'other' };
    const res = await get('/listed').expect(403);
    expect(res.body.message).toBe('caller not allowed');
    expect(access.asked).toEqual(['get /listed']);
  });

  it('logs what the route expects beside a refusal: its audiences, its allowlist', async () => {
    tokens.caller = undefined;
    tokens.refusal = 'wrong audience';
    await get('/who').expect(403);
    expect(logger.text()).toContain(
      `refused token ${tokenFingerprint(TOKEN)} on WhoController.who: wrong audience ` +
        '(the route accepts audience(s) secret-store)',
    );
    tokens.caller = callerOf('other', 'api');
    await get('/listed').expect(403);
    expect(logger.text()).toContain(
      `refused system:serviceaccount:other:api (token ${tokenFingerprint(TOKEN)}) on ListedController.read: ` +
        'caller not allowed ' +
        '(the route allows service account(s) api:api and namespace(s) reports)',
    );
    expect(logger.text()).not.toContain(TOKEN);
  });

  it('gives @Caller() the identity, to every parameter that asks', async () => {
    expect((await get('/who').expect(200)).body).toEqual({ username: 'system:serviceaccount:api:api' });
    expect((await get('/who/twice').expect(200)).body).toEqual({ username: 'system:serviceaccount:api:api' });
  });

  it('answers 401 with WWW-Authenticate without a token, and 403 for a refused one', async () => {
    const missing = await request(app.getHttpServer()).get('/who').expect(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    tokens.caller = undefined;
    expect((await get('/who').expect(403)).body.message).toBe('invalid token');
  });

  it('answers 401 to a request with two Authorization headers, whichever comes first', async () => {
    const server = app.getHttpServer() as Server;
    if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const status = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(
          `GET /who HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n` +
            `Authorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`,
        ),
      );
      let answer = '';
      socket.on('data', (chunk) => (answer += chunk.toString()));
      socket.on('end', () => resolve(answer.split('\r\n')[0]));
      socket.on('error', reject);
    });
    expect(status).toBe('HTTP/1.1 401 Unauthorized');
  });

  it('answers 503 with Retry-After when the token cannot be authenticated now', async () => {
    tokens.authenticate = async () => {
      throw new AuthenticationUnavailableError('down');
    };
    const res = await get('/who').expect(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.message).toBe('authentication is unavailable, retry later');
  });

  it.each([
    ['a', 'b'],
    ['b', 'a'],
  ])('keeps the policy of an inherited handler per controller (/%s/x first)', async (first, second) => {
    const asTeam = async (team: string, route: string) => {
      tokens.caller = callerOf(`team-${team}`, 'svc');
      tokens.audiencesAsked.length = 0;
      access.asked.length = 0;
      const { status } = await get(`/${route}/x`);
      // Each route asks for its own audience and its own RBAC check, whichever was asked first.
      expect({ audiences: tokens.audiencesAsked, checks: access.asked }).toEqual({
        audiences: [[`team-${route}`]],
        checks: team === route ? [`get /${route}`] : [],
      });
      return status;
    };
    expect(await asTeam(first, first)).toBe(200);
    expect(await asTeam(second, second)).toBe(200);
    expect(await asTeam(first, second)).toBe(403);
    expect(await asTeam(second, first)).toBe(403);
  });

  it('hands @Caller() an identity the handler cannot change, so later decisions stay the same', async () => {
    const first = await get('/mutate').expect(200);
    expect(first.body.refusedChanges).toEqual(['groups', 'namespace', 'audiences']);
    expect(first.body.caller.groups).not.toContain('system:masters');
    const second = await get('/mutate').expect(200);
    expect(second.body.caller).toEqual(first.body.caller);
  });
});

describe.each(ADAPTERS)('ServiceAccountGuard at start-up on %s', (_name, adapterFor) => {
  const logger = new RecordingLogger();
  const fakes = () => ({ tokens: new FakeAuthenticator(), access: new FakeAccessReviewer() });

  it.each([
    [TypoController, 'TypoController.typo: @RequireAccess check 1 has an unknown field "names"'],
    [NoSuchParamController, 'reads the route parameter "name", which this route does not have'],
    [NothingController, 'NothingController.open allows nobody'],
  ])('stops start-up at a misconfigured route, naming it (%p)', async (controller, message) => {
    await expect(createApp(adapterFor(), logger, fakes(), { controllers: [controller] })).rejects.toThrow(message);
  });

  it('names every misconfigured route in one error, with its path', async () => {
    const error = await createApp(adapterFor(), logger, fakes(), {
      controllers: [TypoController, NoSuchParamController, NothingController, WhoController],
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(PolicyConfigurationError);
    expect((error as Error).message).toBe(
      '3 route(s) guarded by ServiceAccountGuard cannot be enforced as written:\n' +
        '- [GET /typo] TypoController.typo: @RequireAccess check 1 has an unknown field "names" (a resource check ' +
        'takes verb, group, resource, subresource, name and namespace)\n' +
        '- [GET /no-such-param] NoSuchParamController.noSuchParam: @RequireAccess reads the route parameter "name", ' +
        'which this route does not have\n' +
        '- [GET /nothing] NothingController.open allows nobody: add @AllowServiceAccounts or @AllowNamespaces',
    );
  });

  it('counts guarded and public routes apart as it starts', async () => {
    @Controller('counted')
    @UseGuards(ServiceAccountGuard)
    @Audience('secret-store')
    @AllowNamespaces('api')
    class CountedController {
      @Get()
      one() {
        return 1;
      }

      @Get('two')
      two() {
        return 2;
      }

      @Get('healthz')
      @PublicRoute()
      health() {
        return 'ok';
      }
    }
    const counting = new RecordingLogger();
    const app = await createApp(adapterFor(), counting, fakes(), { controllers: [CountedController] });
    await app.close();
    expect(counting.lines).toContain('2 guarded and 1 public route(s) checked');
  });

  it('stops start-up at every route that declares who may call it but that no guard covers, naming them', async () => {
    const error = await createApp(adapterFor(), logger, fakes(), {
      controllers: [ForgotController, ForgotRoutesController, WhoController, HalfGuardedController],
    }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(PolicyConfigurationError);
    const message = (error as Error).message;
    expect(message).toContain(
      '4 route(s) declare who may call them (@Audience, @AllowServiceAccounts, @AllowNamespaces or @RequireAccess) ' +
        'but no ServiceAccountGuard covers them, so anyone may call them:\n' +
        '- [GET /forgot] ForgotController.read\n' +
        '- [POST /forgot/write] ForgotController.write\n' +
        '- [GET /forgot-too/secrets/:name] ForgotRoutesController.read\n' +
        '- [GET /half/open] HalfGuardedController.open\n',
    );
    expect(message).toContain('@UseGuards(ServiceAccountGuard)');
    expect(message).toContain('{ provide: APP_GUARD, useExisting: ServiceAccountGuard }');
    expect(message).toContain("unguardedRoutes: 'warn'");
    // Public routes and routes that declare nothing have nothing to enforce; guarded routes are fine.
    expect(message).not.toMatch(/healthz|plain|WhoController|HalfGuardedController\.guarded/);
  });

  it('names misconfigured and unguarded routes in the same error', async () => {
    await expect(
      createApp(adapterFor(), logger, fakes(), { controllers: [NothingController, ForgotController] }),
    ).rejects.toThrow(/NothingController\.open allows nobody.*\n.*\n- \[GET \/forgot\] ForgotController\.read/s);
  });

  it('counts routes guarded by a subclass of the guard, through @UseGuards or an APP_GUARD', async () => {
    const app = await createApp(adapterFor(), logger, fakes(), { controllers: [SubclassGuardedController] });
    const asApi = () => request(app.getHttpServer()).get('/sub').set('Authorization', `Bearer ${TOKEN}`);
    expect((await asApi().expect(200)).body).toEqual({ username: 'system:serviceaccount:api:api' });
    await request(app.getHttpServer()).get('/sub').expect(401);
    await app.close();

    @Module({ controllers: [ForgotController], providers: [{ provide: APP_GUARD, useClass: AuditingGuard }] })
    class GloballyGuarded {}
    const global = await createApp(adapterFor(), logger, fakes(), { imports: [GloballyGuarded] });
    await request(global.getHttpServer()).get('/forgot').expect(401);
    await global.close();
  });

  describe("with unguardedRoutes: 'warn'", () => {
    let app: INestApplication;
    const warned = new RecordingLogger();

    beforeAll(async () => {
      app = await createApp(adapterFor(), warned, fakes(), {
        controllers: [ForgotController, ForgotRoutesController],
        options: { unguardedRoutes: 'warn' },
      });
    });

    afterAll(() => app.close());

    it('starts, and warns naming every unguarded route', () => {
      expect(warned.text()).toContain(
        '3 route(s) declare who may call them (@Audience, @AllowServiceAccounts, @AllowNamespaces or @RequireAccess) ' +
          'but no ServiceAccountGuard covers them, so anyone may call them:\n' +
          '- [GET /forgot] ForgotController.read\n' +
          '- [POST /forgot/write] ForgotController.write\n' +
          '- [GET /forgot-too/secrets/:name] ForgotRoutesController.read\n' +
          'Guard them with @UseGuards(ServiceAccountGuard) on their controller or handler, or guard every route with ' +
          "{ provide: APP_GUARD, useExisting: ServiceAccountGuard } in the root module's providers " +
          "(unguardedRoutes: 'warn': start-up goes on).",
      );
      expect(warned.lines).toContain('0 guarded and 0 public route(s) checked');
    });

    it.each([
      ['/forgot', 'ForgotController.read'],
      ['/forgot-too/plain', 'ForgotRoutesController.plain'],
    ])(
      'answers 500 where @Caller() is read on %s, naming the route in the log, never a TypeError',
      async (path, where) => {
        warned.lines.length = 0;
        const res = await request(app.getHttpServer()).get(path).set('Authorization', `Bearer ${TOKEN}`).expect(500);
        expect(res.body).toEqual({ statusCode: 500, message: 'Internal server error' });
        expect(warned.text()).toContain(
          `UnguardedRouteError: @Caller() on ${where}: the route is not guarded by ServiceAccountGuard, so no caller ` +
            'was checked. Add @UseGuards(ServiceAccountGuard) to its controller or handler',
        );
        expect(warned.text()).not.toContain('TypeError');
      },
    );

    it('gives @Caller() undefined on a public route', async () => {
      expect((await request(app.getHttpServer()).get('/forgot/healthz').expect(200)).body).toEqual({ username: null });
    });
  });

  it('stops start-up, saying where it looked, when there are no credentials for the API server', async () => {
    const saved = { ...process.env };
    const home = mkdtempSync(join(tmpdir(), 'k8s-auth-no-home-'));
    try {
      process.env['HOME'] = home;
      delete process.env['KUBECONFIG'];
      delete process.env['KUBERNETES_SERVICE_HOST'];
      const api = new KubernetesApiClient(resolveOptions({}));
      await expect(
        createApp(adapterFor(), logger, { ...fakes(), tokens: undefined, api }, { controllers: [WhoController] }),
      ).rejects.toThrow(
        `Cannot load a Kubernetes client configuration (${join(home, '.kube', 'config')}): found no credentials: no ` +
          'kubeconfig option, not in a pod (KUBERNETES_SERVICE_HOST is not set), KUBECONFIG is not set',
      );
      // Without a guarded route (a service that only sends tokens), no credentials are needed.
      const plain = await createApp(adapterFor(), logger, { ...fakes(), api }, { controllers: [] });
      await plain.close();
    } finally {
      process.env = saved;
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('guards routes of feature modules, with a bare import of K8sAuthModule or none', async () => {
    @Module({ imports: [K8sAuthModule], controllers: [WhoController] })
    class WithImport {}
    @Module({ controllers: [ListedController] })
    class WithoutImport {}
    const moduleRef = await Test.createTestingModule({
      imports: [K8sAuthModule.forRoot({ metrics: false }), WithImport, WithoutImport],
    })
      .overrideProvider(TOKEN_AUTHENTICATOR)
      .useValue(new FakeAuthenticator())
      .overrideProvider(AccessReviewer)
      .useValue(new FakeAccessReviewer())
      .overrideProvider(KubernetesApiClient)
      .useValue({ checkConfiguration: () => undefined })
      .compile();
    const adapter = adapterFor();
    const app = adapter
      ? moduleRef.createNestApplication(adapter, { logger })
      : moduleRef.createNestApplication({ logger });
    await app.init();
    if (adapter) await adapter.getInstance().ready();
    try {
      const asApi = (path: string) => request(app.getHttpServer()).get(path).set('Authorization', `Bearer ${TOKEN}`);
      expect((await asApi('/who').expect(200)).body).toEqual({ username: 'system:serviceaccount:api:api' });
      await asApi('/listed').expect(200);
      await request(app.getHttpServer()).get('/who').expect(401);
    } finally {
      await app.close();
    }
  });

  it('checks every route under a global guard, and only guarded routes otherwise', async () => {
    @Controller('plain')
    class PlainController {
      @Get()
      plain() {
        return 'plain';
      }

      @Get('public')
      @PublicRoute()
      open() {
        return 'open';
      }
    }
    // Not guarded: nothing to enforce, start-up goes on.
    const app = await createApp(adapterFor(), logger, fakes(), { controllers: [PlainController] });
    await request(app.getHttpServer()).get('/plain').expect(200);
    await app.close();

    @Module({ controllers: [PlainController], providers: [{ provide: APP_GUARD, useClass: ServiceAccountGuard }] })
    class GuardedByClass {}
    @Module({ controllers: [PlainController], providers: [{ provide: APP_GUARD, useExisting: ServiceAccountGuard }] })
    class GuardedByExisting {}
    for (const globallyGuarded of [GuardedByClass, GuardedByExisting]) {
      await expect(createApp(adapterFor(), logger, fakes(), { imports: [globallyGuarded] })).rejects.toThrow(
        'PlainController.plain is guarded by ServiceAccountGuard but names no audience',
      );
    }

    // A global guard covers health checks too: start-up suggests @PublicRoute() for a route that declares nothing.
    const errorOf = (imports: Type[], options?: K8sAuthModuleOptions) =>
      createApp(adapterFor(), logger, fakes(), { imports, options }).then(
        () => '',
        (err: Error) => err.message,
      );
    const hint =
      'if it needs no token (a health check, metrics), mark it @PublicRoute() instead: an APP_GUARD guards every route';
    expect(await errorOf([GuardedByClass])).toBe(
      '1 route(s) guarded by ServiceAccountGuard cannot be enforced as written:\n' +
        '- [GET /plain] PlainController.plain is guarded by ServiceAccountGuard but names no audience: ' +
        `add @Audience('<this service>') or the module option 'audiences'; ${hint}`,
    );
    expect(await errorOf([GuardedByClass], { audiences: ['secret-store'] })).toBe(
      '1 route(s) guarded by ServiceAccountGuard cannot be enforced as written:\n' +
        `- [GET /plain] PlainController.plain allows nobody: add @AllowServiceAccounts or @AllowNamespaces; ${hint}`,
    );

    // Not for a route that declares a policy, nor for one that names the guard itself.
    @Controller('declared')
    @Audience('secret-store')
    class DeclaredController {
      @Get()
      declared() {
        return 'declared';
      }
    }
    @Module({ controllers: [DeclaredController], providers: [{ provide: APP_GUARD, useClass: ServiceAccountGuard }] })
    class GuardedDeclared {}
    expect(await errorOf([GuardedDeclared])).not.toContain('@PublicRoute()');
    expect(await errorOf([], undefined)).toBe('');
    const local = await createApp(adapterFor(), logger, fakes(), { controllers: [NothingController] }).catch(
      (err: Error) => err.message,
    );
    expect(local).not.toContain('@PublicRoute()');
  });
});
