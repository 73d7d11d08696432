import { Controller, Get, type INestApplication, UseGuards } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Agent, get as httpGet } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import request from 'supertest';
import type { AccessAttributes } from './access-check';
import { type AccessDecision, AccessReviewer } from './access-reviewer';
import { Caller } from './caller.decorator';
import { ConnectionMemo } from './connection-memo';
import { CALLER_PARAM_KEY } from './k8s-auth.constants';
import { AllowServiceAccounts, Audience } from './k8s-auth.decorators';
import { K8sAuthModule } from './k8s-auth.module';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { RecordingLogger } from '../testing/recording-logger';
import { RequireAccess } from './require-access.decorator';
import { ServiceAccountGuard } from './service-account.guard';
import { type CallerIdentity, ReviewUnavailableError, type ReviewResult, TokenReviewer } from './token-reviewer';

// The guard's RBAC part, with the API server replaced by fakes; the real thing is in the integration specs.

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

  @Get('typo')
  @RequireAccess({ verb: 'get', resource: 'secrets', names: 'x' } as never)
  typo() {
    return 'typo';
  }

  @Get('no-such-param')
  @RequireAccess({ verb: 'get', resource: 'secrets', name: { param: 'name' } })
  noSuchParam() {
    return 'oops';
  }
}

@Controller('listed')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
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

@Controller('nothing')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
class NothingController {
  @Get()
  open() {
    return 'open';
  }
}

const API_CALLER: CallerIdentity = {
  username: 'system:serviceaccount:api:api',
  namespace: 'api',
  serviceAccount: 'api',
  groups: ['system:serviceaccounts'],
  audiences: ['secret-store'],
};

class FakeTokenReviewer {
  caller = API_CALLER;
  async review(): Promise<ReviewResult> {
    return { accepted: true, caller: this.caller };
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

describe('ServiceAccountGuard with @RequireAccess', () => {
  let app: INestApplication;
  let tokens: FakeTokenReviewer;
  let access: FakeAccessReviewer;
  const logger = new RecordingLogger();

  beforeEach(async () => {
    tokens = new FakeTokenReviewer();
    access = new FakeAccessReviewer();
    const moduleRef = await Test.createTestingModule({
      imports: [K8sAuthModule.forRoot({ metrics: false })],
      controllers: [StoreController, ListedController, NothingController, WhoController],
    })
      .overrideProvider(TokenReviewer)
      .useValue(tokens)
      .overrideProvider(AccessReviewer)
      .useValue(access)
      .compile();
    app = moduleRef.createNestApplication({ logger });
    await app.init();
  });

  afterEach(() => app.close());

  const get = (path: string) => request(app.getHttpServer()).get(path).set('Authorization', 'Bearer a.b.c');

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
    access.decide = (d) => (d === 'get stores' ? new ReviewUnavailableError('down') : { allowed: true });
    const res = await get('/secrets/db').expect(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.message).toBe('authorization is unavailable, retry later');
  });

  it('answers 403 rather than 503 when one check is denied and another cannot be made', async () => {
    access.decide = (d) => (d === 'get stores' ? new ReviewUnavailableError('down') : { allowed: false });
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

  it('refuses to open a route whose check has a typo (500, logged once with the route)', async () => {
    const res = await get('/typo').expect(500);
    expect(res.body.message).toBe('route StoreController.typo is not configured for ServiceAccountGuard');
    expect(logger.lines.join('\n')).toContain(
      'StoreController.typo: @RequireAccess check 2 has an unknown field "names"',
    );
    expect(access.asked).toEqual([]);
  });

  it('refuses to open a route whose check reads a parameter the route does not have', async () => {
    await get('/no-such-param').expect(500);
    expect(logger.lines.join('\n')).toContain('reads the route parameter "name", which this route does not have');
  });

  it('gives @Caller() the identity, and marks only the handlers that read it', async () => {
    expect((await get('/who').expect(200)).body).toEqual({ username: 'system:serviceaccount:api:api' });
    expect((await get('/who/twice').expect(200)).body).toEqual({ username: 'system:serviceaccount:api:api' });
    expect(Reflect.getMetadata(CALLER_PARAM_KEY, WhoController.prototype.who)).toBe(true);
    // The guard keeps no identity for the request of a route without @Caller().
    expect(Reflect.getMetadata(CALLER_PARAM_KEY, StoreController.prototype.read)).toBeUndefined();
  });

  it('still refuses a route with neither an allowlist nor RBAC checks', async () => {
    await get('/nothing').expect(500);
    expect(logger.lines.join('\n')).toMatch(/NothingController\.open allows nobody/);
  });
});

describe('ServiceAccountGuard on a keep-alive connection', () => {
  @Controller()
  @UseGuards(ServiceAccountGuard)
  @Audience('secret-store')
  @AllowServiceAccounts('api:api')
  class PingController {
    @Get('ping')
    ping() {
      return 'pong';
    }

    @Get('others-only')
    @AllowServiceAccounts('other:other')
    othersOnly() {
      return 'not for api';
    }
  }

  class CountingReviewer {
    readonly asked: string[] = [];
    accept = true;
    async review(token: string): Promise<ReviewResult> {
      this.asked.push(token);
      return this.accept ? { accepted: true, caller: API_CALLER } : { accepted: false, reason: 'invalid token' };
    }
  }

  let app: INestApplication;
  let reviewer: CountingReviewer;
  let agent: Agent;
  let url: string;

  async function start(options: K8sAuthModuleOptions = {}) {
    reviewer = new CountingReviewer();
    const moduleRef = await Test.createTestingModule({
      imports: [K8sAuthModule.forRoot({ metrics: false, ...options })],
      controllers: [PingController],
    })
      .overrideProvider(TokenReviewer)
      .useValue(reviewer)
      .compile();
    app = moduleRef.createNestApplication({ logger: new RecordingLogger() });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}/ping`;
    agent = new Agent({ keepAlive: true, maxSockets: 1 });
  }

  afterEach(async () => {
    agent.destroy();
    await app.close();
  });

  /** GET /ping on the agent's one connection; the status and the local port (which connection it was). */
  function ping(
    token: string,
    path = '/ping',
    headers: Record<string, string> = {},
  ): Promise<{ status: number; port: number }> {
    return new Promise((resolve, reject) => {
      const req = httpGet(
        new URL(path, url),
        { agent, headers: { authorization: `Bearer ${token}`, ...headers } },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, port: req.socket?.localPort ?? 0 }));
        },
      );
      req.on('error', reject);
    });
  }

  it('reviews a repeated token once, and a new token again', async () => {
    await start();
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await ping('a.b.c'));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(answers.map((a) => a.port)).size).toBe(1);
    expect(reviewer.asked).toEqual(['a.b.c']);
    expect((await ping('a.b.d')).status).toBe(200);
    expect((await ping('a.b.c')).status).toBe(200);
    expect(reviewer.asked).toEqual(['a.b.c', 'a.b.d', 'a.b.c']);
  });

  it('lets a repeated token through without a promise, and still refuses it where the route does not list it', async () => {
    await start();
    const original = ServiceAccountGuard.prototype.canActivate;
    const returned: unknown[] = [];
    const spy = jest.spyOn(ServiceAccountGuard.prototype, 'canActivate').mockImplementation(function (
      this: ServiceAccountGuard,
      context,
    ) {
      const result = original.call(this, context);
      returned.push(result);
      return result;
    });
    try {
      expect((await ping('a.b.c')).status).toBe(200);
      expect((await ping('a.b.c')).status).toBe(200);
      expect((await ping('a.b.c', '/others-only')).status).toBe(403);
    } finally {
      spy.mockRestore();
    }
    expect(returned[0]).toBeInstanceOf(Promise); // reviewed
    expect(returned[1]).toBe(true); // remembered on this connection: no promise for Nest to await
    expect(returned[2]).toBeInstanceOf(Promise); // remembered, but the allowlist refuses: a rejection, not a throw
    await expect(returned[2]).rejects.toThrow('caller not allowed');
    expect(reviewer.asked).toEqual(['a.b.c']);
  });

  it('remembers nothing for a connection that closes after the request (Connection: close, or HTTP/1.0)', async () => {
    await start();
    const remember = jest.spyOn(ConnectionMemo.prototype, 'remember');
    try {
      expect((await ping('a.b.c', '/ping', { connection: 'close' })).status).toBe(200);
      expect(remember).not.toHaveBeenCalled();
      const http10 = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(new URL(url).port), '127.0.0.1', () =>
          socket.end('GET /ping HTTP/1.0\r\nAuthorization: Bearer a.b.c\r\n\r\n'),
        );
        let answer = '';
        socket.on('data', (chunk) => (answer += chunk.toString()));
        socket.on('end', () => resolve(answer));
        socket.on('error', reject);
      });
      expect(http10).toMatch(/^HTTP\/1\.1 200 /);
      expect(remember).not.toHaveBeenCalled();
      expect((await ping('a.b.c')).status).toBe(200); // kept alive: remembered
      expect(remember).toHaveBeenCalledTimes(1);
    } finally {
      remember.mockRestore();
    }
    expect(reviewer.asked).toEqual(['a.b.c', 'a.b.c', 'a.b.c']);
  });

  it('never remembers a refusal', async () => {
    await start();
    reviewer.accept = false;
    for (let i = 0; i < 3; i++) expect((await ping('a.b.c')).status).toBe(403);
    expect(reviewer.asked).toHaveLength(3);
  });

  it('remembers nothing when the review cache is turned off', async () => {
    await start({ maxCacheEntries: 0 });
    for (let i = 0; i < 3; i++) expect((await ping('a.b.c')).status).toBe(200);
    expect(reviewer.asked).toHaveLength(3);
  });

  it('sends a token refused since to the reviewer after the memo lifetime (1 s)', async () => {
    await start();
    expect((await ping('a.b.c')).status).toBe(200);
    reviewer.accept = false;
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    expect((await ping('a.b.c')).status).toBe(403);
    expect(reviewer.asked).toHaveLength(2);
  });
});
