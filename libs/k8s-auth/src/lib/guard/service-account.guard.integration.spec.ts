import { Controller, Get, type INestApplication, Logger, UseGuards } from '@nestjs/common';
import { generateKeyPairSync } from 'node:crypto';
import request from 'supertest';
import {
  AllowNamespaces,
  AllowServiceAccounts,
  Audience,
  RequireAccess,
  Caller,
  type CallerIdentity,
  type K8sAuthModuleOptions,
  PublicRoute,
  ServiceAccountGuard,
} from '../../index';
import {
  bindClusterRole,
  type ControlPlane,
  countApiServerRequests,
  createPod,
  createServiceAccount,
  deletePod,
  mintServiceAccountToken,
  type ServiceAccountRef,
  startControlPlane,
  RecordingLogger,
  signJwt,
} from '../../testing';
import { Registry } from 'prom-client';
import { API, DATA_STORE, GuardedApps, mintToken, REVIEWER, sleep } from '../guarded-apps.spec-support';
import { ApiServerProxy } from '../../testing/api-server-proxy';

const API_ELSEWHERE: ServiceAccountRef = { namespace: 'elsewhere', name: 'api' };
const UNBOUND_REVIEWER: ServiceAccountRef = { namespace: 'secret-store', name: 'no-delegation' };

let handlerCalls = 0;

const TEAM_A: ServiceAccountRef = { namespace: 'team-a', name: 'svc' };
const TEAM_B: ServiceAccountRef = { namespace: 'team-b', name: 'svc' };
const forger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

/** A well-formed JWT signed by a key the API server does not know, expiring `expiresInS` from now. */
function forgedToken(expiresInS = 600, n = 0): string {
  const now = Math.floor(Date.now() / 1000);
  return signJwt(forger, {
    iss: 'https://kubernetes.default.svc.cluster.local',
    sub: 'system:serviceaccount:api:api',
    aud: ['secret-store'],
    iat: now - 60,
    exp: now + expiresInS,
    jti: `forged-${n}`,
  });
}

/** The same bytes spelled otherwise: unused low bits set in the last character of a segment that has them. */
function respelled(token: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const segments = token.split('.');
  const i = segments.findIndex((s) => s.length % 4 === 2 || s.length % 4 === 3);
  const segment = segments[i];
  const last = alphabet.indexOf(segment[segment.length - 1]);
  segments[i] = segment.slice(0, -1) + alphabet[last ^ 1];
  expect(Buffer.from(segments[i], 'base64url')).toEqual(Buffer.from(segment, 'base64url'));
  return segments.join('.');
}

@Controller()
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class SecretsController {
  @Get('secret')
  secret(@Caller() caller: CallerIdentity) {
    handlerCalls++;
    return caller;
  }

  @Get('by-namespace')
  @AllowNamespaces('data-store')
  byNamespace() {
    handlerCalls++;
    return 'ok';
  }

  @Get('healthz')
  @PublicRoute()
  health() {
    return 'ok';
  }
}

/** One handler, inherited by three controllers that differ in allowlist, audience and RBAC checks. */
class TeamBase {
  @Get('x')
  x(@Caller() caller: CallerIdentity) {
    handlerCalls++;
    return { username: caller.username };
  }
}

@Controller('a')
@UseGuards(ServiceAccountGuard)
@Audience('team-a')
@AllowServiceAccounts('team-a:svc')
class TeamAController extends TeamBase {}

@Controller('b')
@UseGuards(ServiceAccountGuard)
@Audience('team-b')
@AllowServiceAccounts('team-b:svc')
class TeamBController extends TeamBase {}

/** RBAC alone decides: only team-a may create TokenReviews. */
@Controller('c')
@UseGuards(ServiceAccountGuard)
@Audience('team-a')
@RequireAccess({ verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews' })
class TeamCController extends TeamBase {}

@Controller('mutate')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class MutatingController {
  @Get()
  mutate(@Caller() caller: CallerIdentity) {
    let changed = true;
    try {
      (caller.groups as string[]).push('system:masters');
    } catch {
      changed = false;
    }
    return { changed, groups: caller.groups };
  }
}

@Controller('unconfigured')
@UseGuards(ServiceAccountGuard)
class UnconfiguredController {
  @Get()
  open() {
    handlerCalls++;
    return 'open';
  }
}

/** Declares who may call it, but names no guard: what a team that forgot APP_GUARD or @UseGuards writes. */
@Controller('forgot')
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class ForgotController {
  @Get()
  read(@Caller() caller: CallerIdentity) {
    handlerCalls++;
    return { username: caller.username };
  }

  @Get('open')
  open() {
    handlerCalls++;
    return 'open';
  }

  @Get('healthz')
  @PublicRoute()
  health(@Caller() caller: CallerIdentity | undefined) {
    return { caller: caller ?? null };
  }
}

describe('ServiceAccountGuard against a real API server', () => {
  let cp: ControlPlane;
  let apps: GuardedApps;
  const logger = new RecordingLogger();
  const kubeconfigFile = (account: ServiceAccountRef, server?: string) => apps.kubeconfigFile(account, server);
  const boot = (options: K8sAuthModuleOptions) => apps.boot(options, { listen: true });
  const token = (account: ServiceAccountRef, audiences?: string[]) => mintToken(cp, account, audiences);

  let app: INestApplication;
  let apiToken: string;

  beforeAll(async () => {
    cp = await startControlPlane();
    apps = new GuardedApps(cp, [SecretsController, MutatingController], logger);
    for (const account of [API, DATA_STORE, API_ELSEWHERE, REVIEWER, UNBOUND_REVIEWER, TEAM_A, TEAM_B]) {
      await createServiceAccount(cp.kubeConfig, account);
    }
    await bindClusterRole(cp.kubeConfig, REVIEWER, 'system:auth-delegator');
    await bindClusterRole(cp.kubeConfig, TEAM_A, 'system:auth-delegator');
    app = await boot({ kubeconfig: await kubeconfigFile(REVIEWER), cacheTtlMs: 1000 });
    apiToken = await token(API);
    Logger.overrideLogger(logger);
  });

  afterAll(async () => {
    await apps?.close();
    await cp?.stop();
  });

  beforeEach(() => {
    handlerCalls = 0;
  });

  it('lets the allowed service account through and tells the handler who called', async () => {
    const pod = await createPod(cp.kubeConfig, API, 'api-7d9f');
    const { token: podToken } = await mintServiceAccountToken(cp.kubeConfig, API, {
      audiences: ['secret-store'],
      expirationSeconds: 600,
      boundObject: { kind: 'Pod', ...pod },
    });
    const res = await request(app.getHttpServer())
      .get('/secret')
      .set('Authorization', `Bearer ${podToken}`)
      .expect(200);
    expect(res.body).toMatchObject({
      username: 'system:serviceaccount:api:api',
      namespace: 'api',
      serviceAccount: 'api',
      podName: 'api-7d9f',
      podUid: pod.uid,
      audiences: ['secret-store'],
    });
    expect(res.body.groups).toEqual(expect.arrayContaining(['system:serviceaccounts', 'system:serviceaccounts:api']));
    expect(handlerCalls).toBe(1);
  });

  it('answers 401 with WWW-Authenticate when there is no token', async () => {
    const res = await request(app.getHttpServer()).get('/secret').expect(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(handlerCalls).toBe(0);
  });

  it('answers 401 to a value that is not a token, without asking the API server', async () => {
    const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
    const res = await request(app.getHttpServer()).get('/secret').set('Authorization', 'Bearer garbage').expect(401);
    expect(res.headers['www-authenticate']).toContain('invalid_request');
    expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before);
  });

  it.each([
    ['a JWT-shaped forgery', async () => forgedToken(), 'invalid token'],
    ['a token for another audience', () => token(API, ['other']), 'wrong audience'],
    ['a legacy-style token meant for the API server', () => token(API, []), 'wrong audience'],
    ['another service account', () => token(DATA_STORE), 'caller not allowed'],
    ['the same name in another namespace', () => token(API_ELSEWHERE), 'caller not allowed'],
  ])('refuses %s with 403', async (_what, makeToken, reason) => {
    const res = await request(app.getHttpServer())
      .get('/secret')
      .set('Authorization', `Bearer ${await makeToken()}`)
      .expect(403);
    expect(res.body.message).toBe(reason);
    expect(handlerCalls).toBe(0);
  });

  it('lets a whole namespace in where the route says so, and the route policy replaces the controller one', async () => {
    await request(app.getHttpServer())
      .get('/by-namespace')
      .set('Authorization', `Bearer ${await token(DATA_STORE)}`)
      .expect(200);
    await request(app.getHttpServer()).get('/by-namespace').set('Authorization', `Bearer ${apiToken}`).expect(403);
  });

  it('serves public routes without a token', async () => {
    await request(app.getHttpServer()).get('/healthz').expect(200);
  });

  it('stops start-up at a guarded route that names no audience or callers, naming it', async () => {
    await expect(
      apps.boot(
        { kubeconfig: await kubeconfigFile(REVIEWER) },
        { listen: true, controllers: [UnconfiguredController] },
      ),
    ).rejects.toThrow(/UnconfiguredController\.open .*names no audience/);
    expect(handlerCalls).toBe(0);
  });

  describe.each([
    ['Express', false],
    ['Fastify', true],
  ])('routes that declare who may call them but no guard, on %s', (_name, fastify) => {
    it('stop start-up, all named with their paths, saying how to guard them', async () => {
      const error = await apps
        .boot(
          { kubeconfig: await kubeconfigFile(REVIEWER) },
          { listen: true, fastify, controllers: [SecretsController, ForgotController] },
        )
        .then(
          () => undefined,
          (err: unknown) => err as Error,
        );
      expect(error?.message).toContain(
        '2 route(s) declare who may call them (@Audience, @AllowServiceAccounts, @AllowNamespaces or ' +
          '@RequireAccess) but no ServiceAccountGuard covers them, so anyone may call them:\n' +
          '- [GET /forgot] ForgotController.read\n' +
          '- [GET /forgot/open] ForgotController.open\n' +
          'Guard them with @UseGuards(ServiceAccountGuard)',
      );
      expect(error?.message).toContain("unguardedRoutes: 'warn'");
      expect(handlerCalls).toBe(0);
    });

    it("start with unguardedRoutes: 'warn'; @Caller() there answers 500 naming the route, not a TypeError", async () => {
      const warned = await apps.boot(
        { kubeconfig: await kubeconfigFile(REVIEWER), unguardedRoutes: 'warn' },
        { listen: true, fastify, controllers: [SecretsController, ForgotController] },
      );
      const server = warned.getHttpServer();
      expect(logger.text()).toContain('- [GET /forgot] ForgotController.read');
      logger.lines.length = 0;

      // Even a genuine token: no guard ran, so no caller was checked.
      const res = await request(server).get('/forgot').set('Authorization', `Bearer ${apiToken}`).expect(500);
      expect(res.body).toEqual({ statusCode: 500, message: 'Internal server error' });
      expect(handlerCalls).toBe(0);
      expect(logger.text()).toContain(
        '@Caller() on ForgotController.read: the route is not guarded by ServiceAccountGuard',
      );
      expect(logger.text()).not.toContain('TypeError');

      // What the warning warned about: the route is open to anyone.
      await request(server).get('/forgot/open').expect(200);
      expect((await request(server).get('/forgot/healthz').expect(200)).body).toEqual({ caller: null });
      // Guarded routes of the same app are checked as ever.
      await request(server).get('/secret').expect(401);
      const ok = await request(server).get('/secret').set('Authorization', `Bearer ${apiToken}`).expect(200);
      expect(ok.body.username).toBe('system:serviceaccount:api:api');
    });
  });

  it.each([
    ['a', 'b', 'c'],
    ['c', 'b', 'a'],
  ])(
    'keeps the allowlist, audience and RBAC checks of an inherited handler per controller (/%s/x first)',
    async (...order) => {
      const teamApp = await apps.boot(
        { kubeconfig: await kubeconfigFile(REVIEWER) },
        { listen: true, controllers: [TeamAController, TeamBController, TeamCController] },
      );
      const tokens = {
        aForA: await token(TEAM_A, ['team-a']),
        bForB: await token(TEAM_B, ['team-b']),
        bForA: await token(TEAM_B, ['team-a']),
      };
      const expected: Record<string, Record<keyof typeof tokens, number>> = {
        a: { aForA: 200, bForB: 403, bForA: 403 },
        b: { aForA: 403, bForB: 200, bForA: 403 },
        c: { aForA: 200, bForB: 403, bForA: 403 },
      };
      for (const route of order) {
        for (const [name, status] of Object.entries(expected[route])) {
          const res = await request(teamApp.getHttpServer())
            .get(`/${route}/x`)
            .set('Authorization', `Bearer ${tokens[name as keyof typeof tokens]}`);
          expect({ route, name, status: res.status }).toEqual({ route, name, status });
        }
      }
    },
  );

  it('hands the handler an identity it cannot change: the next request sees the same', async () => {
    const first = await request(app.getHttpServer()).get('/mutate').set('Authorization', `Bearer ${apiToken}`);
    expect(first.body).toEqual({ changed: false, groups: expect.not.arrayContaining(['system:masters']) });
    const second = await request(app.getHttpServer()).get('/mutate').set('Authorization', `Bearer ${apiToken}`);
    expect(second.body).toEqual(first.body);
  });

  it('refuses another spelling of a genuine token (non-canonical base64url) with 401, without a review', async () => {
    await request(app.getHttpServer()).get('/secret').set('Authorization', `Bearer ${apiToken}`).expect(200);
    const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
    const res = await request(app.getHttpServer())
      .get('/secret')
      .set('Authorization', `Bearer ${respelled(apiToken)}`)
      .expect(401);
    expect(res.body.message).toMatch(/canonical/);
    expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before);
  });

  it('refuses tokens expired by their own exp without a review', async () => {
    const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
    for (let n = 0; n < 200; n++) {
      const res = await request(app.getHttpServer())
        .get('/secret')
        .set('Authorization', `Bearer ${forgedToken(-3600, n)}`);
      expect(res.status).toBe(403);
    }
    expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before);
  });

  // Whether some of a batch exceed the bound of reviews in flight depends on how fast this API server answers; the
  // bound itself is proven on an API server made slow, in the security suite (review-budget), and in the strategy's spec.
  it('keeps a cached caller through a flood of forged tokens, reviewing only the forgeries it answers with 403', async () => {
    const flooded = await boot({
      kubeconfig: await kubeconfigFile(REVIEWER),
      // The caller's acceptance outlives the flood, however slow the machine.
      cacheTtlMs: 600_000,
      maxCacheEntries: 20,
      maxReviewsInFlight: 4,
    });
    const server = flooded.getHttpServer();
    const caller = await token(API);
    await request(server).get('/secret').set('Authorization', `Bearer ${caller}`).expect(200);
    const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
    const statuses: number[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          request(server)
            .get('/secret')
            .set('Authorization', `Bearer ${forgedToken(600, batch * 30 + i)}`),
        ),
      );
      for (const res of answers) {
        statuses.push(res.status);
        if (res.status === 503) expect(res.headers['retry-after']).toBe('5');
      }
      // The accepted caller is answered from the cache throughout.
      await request(server).get('/secret').set('Authorization', `Bearer ${caller}`).expect(200);
    }
    const reviews = (await countApiServerRequests(cp.kubeConfig, 'tokenreviews')) - before;
    expect(statuses.filter((s) => s !== 403 && s !== 503)).toEqual([]);
    // Only the forgeries let through the bound were reviewed; the caller needed none.
    expect(reviews).toBe(statuses.filter((s) => s === 403).length);
  });

  it('refuses a token bound to a pod once the pod is deleted (after the cache TTL)', async () => {
    const pod = await createPod(cp.kubeConfig, API, 'api-doomed');
    const { token: podToken } = await mintServiceAccountToken(cp.kubeConfig, API, {
      audiences: ['secret-store'],
      expirationSeconds: 600,
      boundObject: { kind: 'Pod', ...pod },
    });
    await request(app.getHttpServer()).get('/secret').set('Authorization', `Bearer ${podToken}`).expect(200);
    await deletePod(cp.kubeConfig, API.namespace, pod.name);
    // The guard's cache lives 1 s here; the API server's own lasts about 10 s. The deadline only ends a hung test.
    const deadline = Date.now() + 45_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      status = (await request(app.getHttpServer()).get('/secret').set('Authorization', `Bearer ${podToken}`)).status;
    }
    expect(status).toBe(403);
  });

  it('makes exactly one TokenReview for 100 concurrent requests with one new token', async () => {
    // The API server sees the review only once all 100 requests have missed the cache and wait on it, and the answer
    // is kept far longer than the test runs: one review, however slow the machine, and one per request without
    // the sharing of reviews under way.
    const proxy = new ApiServerProxy({ target: { host: '127.0.0.1', port: Number(new URL(cp.server).port) } });
    const metrics = new Registry();
    try {
      const held = await boot({
        kubeconfig: await kubeconfigFile(REVIEWER, await proxy.start()),
        cacheTtlMs: 600_000,
        requestTimeoutMs: 600_000,
        metrics,
      });
      const fresh = await token(API);
      const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      void proxy.hold();
      const server = held.getHttpServer();
      const statuses = Promise.all(
        Array.from({ length: 100 }, () =>
          request(server)
            .get('/secret')
            .set('Authorization', `Bearer ${fresh}`)
            .then((r) => r.status),
        ),
      );
      const misses = async () =>
        (await metrics.getSingleMetric('k8s_auth_review_cache_lookups_total')?.get())?.values.find(
          (v) => v.labels['result'] === 'miss',
        )?.value ?? 0;
      // The deadline only ends a hung test: it is no bound on speed.
      for (const deadline = Date.now() + 45_000; (await misses()) < 100; await sleep(20)) {
        if (Date.now() > deadline) throw new Error(`only ${await misses()} of 100 requests reached the cache`);
      }
      proxy.release();
      expect(await statuses).toEqual(Array(100).fill(200));
      expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before + 1);
    } finally {
      await proxy.stop();
    }
  });

  it('answers 503 and names the missing binding when the reviewer lacks system:auth-delegator', async () => {
    const unbound = await boot({ kubeconfig: await kubeconfigFile(UNBOUND_REVIEWER), audiences: ['secret-store'] });
    const res = await request(unbound.getHttpServer())
      .get('/secret')
      .set('Authorization', `Bearer ${apiToken}`)
      .expect(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(logger.lines.join('\n')).toMatch(/system:serviceaccount:secret-store:no-delegation.*system:auth-delegator/s);
  });

  it('answers 503 while the API server is down, and 200 again once it is back, without a restart', async () => {
    const quick = await boot({ kubeconfig: await kubeconfigFile(REVIEWER), requestTimeoutMs: 2000 });
    const fresh = await token(API);
    const other = await token(API);
    await request(quick.getHttpServer()).get('/secret').set('Authorization', `Bearer ${fresh}`).expect(200);
    await cp.stopApiServer();
    try {
      // The verdict is the 503 itself; how long it took is information (the timeout is proven in the security suite).
      const started = Date.now();
      const res = await request(quick.getHttpServer()).get('/secret').set('Authorization', `Bearer ${other}`);
      console.log(`API server down: ${res.status} after ${Date.now() - started} ms`);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      // A review cached before the outage still holds.
      await request(quick.getHttpServer()).get('/secret').set('Authorization', `Bearer ${fresh}`).expect(200);
    } finally {
      await cp.startApiServer();
    }
    await request(quick.getHttpServer()).get('/secret').set('Authorization', `Bearer ${other}`).expect(200);
  });

  it('decides the same on Fastify', async () => {
    const fastify = await apps.boot({ kubeconfig: await kubeconfigFile(REVIEWER) }, { listen: true, fastify: true });
    const server = fastify.getHttpServer();
    const res = await request(server).get('/secret').set('Authorization', `Bearer ${apiToken}`).expect(200);
    expect(res.body).toMatchObject({ username: 'system:serviceaccount:api:api', audiences: ['secret-store'] });
    expect((await request(server).get('/secret').expect(401)).headers['www-authenticate']).toBe('Bearer');
    const other = await request(server)
      .get('/secret')
      .set('Authorization', `Bearer ${await token(DATA_STORE)}`);
    expect(other.status).toBe(403);
    expect(other.body.message).toBe('caller not allowed');
    await request(server).get('/healthz').expect(200);
  });

  it('never writes a token to the log', async () => {
    const tokens = [apiToken, await token(DATA_STORE)];
    await request(app.getHttpServer()).get('/secret').set('Authorization', `Bearer ${tokens[1]}`).expect(403);
    const all = logger.lines.join('\n');
    for (const t of tokens) {
      for (const part of t.split('.')) expect(all).not.toContain(part.slice(0, 16));
    }
    expect(all).toMatch(/refused system:serviceaccount:data-store:data-store \(token [0-9a-f]{12}\)/);
    // What the route expects is in the line; it comes from the route's decorators, not the request.
    expect(all).toContain(
      'on SecretsController.secret: caller not allowed (the route allows service account(s) api:api)',
    );
    await request(app.getHttpServer())
      .get('/secret')
      .set('Authorization', `Bearer ${await token(API, ['other'])}`)
      .expect(403);
    expect(logger.text()).toMatch(/refused token [0-9a-f]{12} on SecretsController\.secret: wrong audience \(/);
    expect(logger.text()).toContain(
      'SecretsController.secret: wrong audience (the route accepts audience(s) secret-store)',
    );
  });
});
