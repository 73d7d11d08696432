import { Controller, Get, type INestApplication, Logger, UseGuards } from '@nestjs/common';
import request from 'supertest';
import {
  AllowNamespaces,
  AllowServiceAccounts,
  Audience,
  Caller,
  type CallerIdentity,
  type K8sAuthModuleOptions,
  PublicRoute,
  ServiceAccountGuard,
} from '../index';
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
} from '../testing';
import { API, DATA_STORE, GuardedApps, mintToken, REVIEWER } from './guarded-apps.spec-support';

const API_ELSEWHERE: ServiceAccountRef = { namespace: 'elsewhere', name: 'api' };
const UNBOUND_REVIEWER: ServiceAccountRef = { namespace: 'secret-store', name: 'no-delegation' };

let handlerCalls = 0;

/** A well-formed JWT that nobody signed. */
function forgedToken(): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part({ sub: 'system:serviceaccount:api:api', aud: ['secret-store'] })}.${part({ sig: 1 })}`;
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

@Controller('unconfigured')
@UseGuards(ServiceAccountGuard)
class UnconfiguredController {
  @Get()
  open() {
    handlerCalls++;
    return 'open';
  }
}

describe('ServiceAccountGuard against a real API server', () => {
  let cp: ControlPlane;
  let apps: GuardedApps;
  const logger = new RecordingLogger();
  const kubeconfigFile = (account: ServiceAccountRef) => apps.kubeconfigFile(account);
  const boot = (options: K8sAuthModuleOptions) => apps.boot(options, { listen: true });
  const token = (account: ServiceAccountRef, audiences?: string[]) => mintToken(cp, account, audiences);

  let app: INestApplication;
  let apiToken: string;

  beforeAll(async () => {
    cp = await startControlPlane();
    apps = new GuardedApps(cp, [SecretsController, UnconfiguredController], logger);
    for (const account of [API, DATA_STORE, API_ELSEWHERE, REVIEWER, UNBOUND_REVIEWER]) {
      await createServiceAccount(cp.kubeConfig, account);
    }
    await bindClusterRole(cp.kubeConfig, REVIEWER, 'system:auth-delegator');
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

  it('never opens a guarded route that names no audience or callers', async () => {
    const res = await request(app.getHttpServer())
      .get('/unconfigured')
      .set('Authorization', `Bearer ${apiToken}`)
      .expect(500);
    expect(res.body.message).toContain('UnconfiguredController.open');
    expect(handlerCalls).toBe(0);
    expect(logger.lines.join('\n')).toMatch(/UnconfiguredController\.open .*names no audience/);
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
    // Our cache lives 1 s here; the API server's own lasts about 10 s.
    const deadline = Date.now() + 25_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      status = (await request(app.getHttpServer()).get('/secret').set('Authorization', `Bearer ${podToken}`)).status;
    }
    expect(status).toBe(403);
  });

  it('makes exactly one TokenReview for 100 concurrent requests with one new token', async () => {
    const fresh = await token(API);
    const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
    const server = app.getHttpServer();
    const statuses = await Promise.all(
      Array.from({ length: 100 }, () =>
        request(server)
          .get('/secret')
          .set('Authorization', `Bearer ${fresh}`)
          .then((r) => r.status),
      ),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before + 1);
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
      const started = Date.now();
      const res = await request(quick.getHttpServer()).get('/secret').set('Authorization', `Bearer ${other}`);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(Date.now() - started).toBeLessThan(3000);
      // A review cached before the outage still holds.
      await request(quick.getHttpServer()).get('/secret').set('Authorization', `Bearer ${fresh}`).expect(200);
    } finally {
      await cp.startApiServer();
    }
    await request(quick.getHttpServer()).get('/secret').set('Authorization', `Bearer ${other}`).expect(200);
  });

  it('never writes a token to the log', async () => {
    const tokens = [apiToken, await token(DATA_STORE)];
    await request(app.getHttpServer()).get('/secret').set('Authorization', `Bearer ${tokens[1]}`).expect(403);
    const all = logger.lines.join('\n');
    for (const t of tokens) {
      for (const part of t.split('.')) expect(all).not.toContain(part.slice(0, 16));
    }
    expect(all).toMatch(/refused system:serviceaccount:data-store:data-store \(token [0-9a-f]{12}\)/);
  });
});
