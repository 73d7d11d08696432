import {
  type KubernetesObject,
  KubernetesObjectApi,
  loadAllYaml,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { Controller, Delete, Get, type INestApplication, Logger, Param, UseGuards } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import {
  AllowServiceAccounts,
  Audience,
  Caller,
  type CallerIdentity,
  type K8sAuthModuleOptions,
  RequireAccess,
  type ResourceAccessCheck,
  ServiceAccountGuard,
} from '../../index';
import {
  bindClusterRole,
  type ControlPlane,
  countApiServerRequests,
  createPod,
  createServiceAccount,
  mintServiceAccountToken,
  type ServiceAccountRef,
  startControlPlane,
  RecordingLogger,
} from '../../testing';
import { API, DATA_STORE, GuardedApps, REVIEWER, sleep } from '../guarded-apps.spec-support';

/** May review tokens but not access: a reviewer with a home-made role instead of system:auth-delegator. */
const TOKEN_ONLY_REVIEWER: ServiceAccountRef = { namespace: 'secret-store', name: 'token-reviews-only' };

const STORE = 'secret-store.example.com';
const RBAC_EXAMPLE = join(__dirname, '../../../../../k8s/base/secret-store-rbac.yaml');

// What k8s/base/secret-store-rbac.yaml grants api/api.
const READ_SECRET: ResourceAccessCheck = {
  verb: 'get',
  group: STORE,
  resource: 'secrets',
  namespace: 'secret-store',
  name: { param: 'name' },
};
// Granted and revoked by the tests themselves.
const READ_REPORT: ResourceAccessCheck = { ...READ_SECRET, resource: 'reports' };

let handlerCalls = 0;

/** RBAC alone decides: no allowlist in code. */
@Controller('secrets')
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
class SecretsController {
  @Get(':name')
  @RequireAccess(READ_SECRET)
  read(@Param('name') name: string, @Caller() caller: CallerIdentity) {
    handlerCalls++;
    return { name, readBy: caller.username };
  }

  @Delete(':name')
  @RequireAccess({ ...READ_SECRET, verb: 'delete' })
  remove() {
    handlerCalls++;
    return 'deleted';
  }
}

@Controller()
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
class OtherController {
  @Get('reports/:name')
  @RequireAccess(READ_REPORT)
  report() {
    handlerCalls++;
    return 'report';
  }

  /** An allowlist and RBAC: both must pass. */
  @Get('audited/:name')
  @AllowServiceAccounts('data-store:data-store')
  @RequireAccess(READ_SECRET)
  audited() {
    handlerCalls++;
    return 'audited';
  }

  @Get('metrics')
  @RequireAccess({ path: '/metrics', verb: 'get' })
  metrics() {
    handlerCalls++;
    return 'metrics';
  }
}

describe('@RequireAccess (SubjectAccessReview) against a real API server', () => {
  let cp: ControlPlane;
  let apps: GuardedApps;
  const logger = new RecordingLogger();
  const tokens: string[] = [];
  const kubeconfigFile = (account: ServiceAccountRef) => apps.kubeconfigFile(account);

  async function boot(options: K8sAuthModuleOptions = {}): Promise<INestApplication> {
    return apps.boot({ kubeconfig: await kubeconfigFile(REVIEWER), ...options }, { listen: true });
  }

  async function token(account: ServiceAccountRef): Promise<string> {
    const minted = await mintServiceAccountToken(cp.kubeConfig, account, {
      audiences: ['secret-store'],
      expirationSeconds: 600,
    });
    tokens.push(minted.token);
    return minted.token;
  }

  const get = (app: INestApplication, path: string, bearer: string) =>
    request(app.getHttpServer()).get(path).set('Authorization', `Bearer ${bearer}`);

  const reviews = () => countApiServerRequests(cp.kubeConfig, 'subjectaccessreviews');

  /**
   * Asks until the status is `want` (the API server's RBAC follows its informers, not instantly). The deadline only
   * ends a hung test: it is no bound on speed.
   */
  async function until(ask: () => Promise<number>, want: number, timeoutMs = 45_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let status = await ask();
    while (status !== want && Date.now() < deadline) {
      await sleep(100);
      status = await ask();
    }
    return status;
  }

  const reportBinding = {
    metadata: { name: 'api-report-reader', namespace: 'secret-store' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'report-reader' },
    subjects: [{ kind: 'ServiceAccount', namespace: API.namespace, name: API.name }],
  };

  let rbac: RbacAuthorizationV1Api;
  let store: INestApplication;
  let apiToken: string;
  let dataStoreToken: string;

  beforeAll(async () => {
    cp = await startControlPlane();
    apps = new GuardedApps(cp, [SecretsController, OtherController], logger);
    for (const account of [API, DATA_STORE, REVIEWER, TOKEN_ONLY_REVIEWER]) {
      await createServiceAccount(cp.kubeConfig, account);
    }
    await bindClusterRole(cp.kubeConfig, REVIEWER, 'system:auth-delegator');
    rbac = cp.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createClusterRole({
      body: {
        metadata: { name: 'token-reviewer-only' },
        rules: [{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] }],
      },
    });
    await bindClusterRole(cp.kubeConfig, TOKEN_ONLY_REVIEWER, 'token-reviewer-only');
    await rbac.createNamespacedRole({
      namespace: 'secret-store',
      body: {
        metadata: { name: 'report-reader' },
        rules: [{ apiGroups: [STORE], resources: ['reports'], verbs: ['get'] }],
      },
    });
    await rbac.createClusterRole({
      body: { metadata: { name: 'metrics-reader' }, rules: [{ nonResourceURLs: ['/metrics'], verbs: ['get'] }] },
    });
    await bindClusterRole(cp.kubeConfig, API, 'metrics-reader');

    // The example of k8s/, applied as it is.
    const objects = kubeObjectsOf(readFileSync(RBAC_EXAMPLE, 'utf8'));
    expect(objects.map((o) => o.kind)).toEqual(['Role', 'RoleBinding']);
    const objectApi = KubernetesObjectApi.makeApiClient(cp.kubeConfig);
    for (const object of objects) await objectApi.create(object);

    store = await boot();
    apiToken = await token(API);
    dataStoreToken = await token(DATA_STORE);
    Logger.overrideLogger(logger);
  });

  afterAll(async () => {
    await apps?.close();
    await cp?.stop();
  });

  beforeEach(() => {
    handlerCalls = 0;
  });

  it('lets api read a secret through the RoleBinding of k8s/, with no allowlist in code', async () => {
    const before = await reviews();
    const res = await until(() => get(store, '/secrets/db-password', apiToken).then((r) => r.status), 200);
    expect(res).toBe(200);
    const body = (await get(store, '/secrets/db-password', apiToken).expect(200)).body;
    expect(body).toEqual({ name: 'db-password', readBy: 'system:serviceaccount:api:api' });
    expect(handlerCalls).toBeGreaterThanOrEqual(2);
    // The second request was answered from the cache.
    const after = await reviews();
    expect(after).toBeGreaterThan(before);
    await get(store, '/secrets/db-password', apiToken).expect(200);
    expect(await reviews()).toBe(after);
  });

  it('passes a pod-bound token (user extra) on to the review', async () => {
    const pod = await createPod(cp.kubeConfig, API, 'api-rbac-pod');
    const { token: podToken } = await mintServiceAccountToken(cp.kubeConfig, API, {
      audiences: ['secret-store'],
      expirationSeconds: 600,
      boundObject: { kind: 'Pod', ...pod },
    });
    tokens.push(podToken);
    await get(store, '/secrets/db-password', podToken).expect(200);
  });

  it('refuses data-store, which no RoleBinding names, with 403 and the reason class only', async () => {
    const res = await get(store, '/secrets/db-password', dataStoreToken).expect(403);
    expect(res.body.message).toBe('access denied by RBAC');
    expect(JSON.stringify(res.body)).not.toMatch(/RoleBinding|secret-reader|RBAC:/);
    expect(handlerCalls).toBe(0);
    expect(logger.lines.join('\n')).toContain(`refused system:serviceaccount:data-store:data-store (token `);
  });

  it('allows the same caller on one route and refuses it on another', async () => {
    await get(store, '/secrets/db-password', apiToken).expect(200);
    const res = await request(store.getHttpServer())
      .delete('/secrets/db-password')
      .set('Authorization', `Bearer ${apiToken}`)
      .expect(403);
    expect(res.body.message).toBe('access denied by RBAC');
    expect(handlerCalls).toBe(1);
    expect(logger.lines.join('\n')).toMatch(
      /refused system:serviceaccount:api:api .*RBAC denies delete secret-store\.example\.com\/secrets "db-password" in secret-store/,
    );
  });

  it('decides non-resource checks (nonResourceURLs) too', async () => {
    await get(store, '/metrics', apiToken).expect(200);
    await get(store, '/metrics', dataStoreToken).expect(403);
  });

  it('needs both the allowlist and RBAC where a route has both', async () => {
    const before = await reviews();
    // RBAC would allow api, but the allowlist does not name it: refused without a review.
    const notListed = await get(store, '/audited/db-password', apiToken).expect(403);
    expect(notListed.body.message).toBe('caller not allowed');
    expect(await reviews()).toBe(before);
    // The allowlist names data-store, but RBAC does not allow it.
    const denied = await get(store, '/audited/db-password', dataStoreToken).expect(403);
    expect(denied.body.message).toBe('access denied by RBAC');
    expect(handlerCalls).toBe(0);
  });

  it.each([
    ['upper case and an underscore', '/secrets/Db_Password'],
    ['an encoded slash', '/secrets/a%2F..%2Fb'],
    ['a dot-dot', '/secrets/..'],
    ['a name too long', `/secrets/${'a'.repeat(254)}`],
  ])('answers 400 to a name that is not a Kubernetes name (%s), without a review', async (_what, path) => {
    const before = await reviews();
    const res = await get(store, path, apiToken);
    expect(res.status).toBe(400);
    expect(res.body.message).toBe('route parameter "name" is not a valid name');
    expect(await reviews()).toBe(before);
    expect(handlerCalls).toBe(0);
  });

  it('makes one SubjectAccessReview for 50 concurrent identical requests', async () => {
    const fresh = await token(API);
    const before = await reviews();
    const statuses = await Promise.all(
      Array.from({ length: 50 }, () => get(store, '/secrets/concurrent', fresh).then((r) => r.status)),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(await reviews()).toBe(before + 1);
  });

  it('keeps an allowed decision, needing no review, after more denied names than the cache bound', async () => {
    const bound = 5;
    const small = await boot({ maxCacheEntries: bound });
    await get(small, '/secrets/kept', apiToken).expect(200);
    const names = Array.from({ length: 4 * bound }, (_, i) => `denied-${i}`);
    for (const name of names) {
      const res = await get(small, `/secrets/${name}`, dataStoreToken);
      expect(res.status).toBe(403);
    }
    const before = await reviews();
    await get(small, '/secrets/kept', apiToken).expect(200);
    expect(await reviews()).toBe(before);
  });

  it('allows after the deny TTL once a RoleBinding is created, and denies after the allow TTL once it is deleted', async () => {
    const denyTtlMs = 1500;
    const allowTtlMs = 3000;
    const timed = await boot({ accessDenyCacheTtlMs: denyTtlMs, accessCacheTtlMs: allowTtlMs });
    // What RBAC says now (nothing kept), and decisions kept far longer than the test runs, however slow the machine.
    const uncached = await boot({ accessDenyCacheTtlMs: 0, accessCacheTtlMs: 0 });
    const keptDenied = await boot({ accessDenyCacheTtlMs: 600_000 });
    const keptAllowed = await boot({ accessCacheTtlMs: 600_000 });
    const askOf = (app: INestApplication) => () => get(app, '/reports/q3', apiToken).then((r) => r.status);
    // When the last question to `timed` was sent: a decision it made is kept from a moment after that.
    let sentAt = 0;
    const ask = () => {
      sentAt = Date.now();
      return askOf(timed)();
    };
    // TTLs are lower bounds only, measured from before the question: slowness can only lengthen what is measured.
    // The 50 ms allow for Date.now() against the cache's performance.now() clock.

    // Denied, and the denial is kept.
    await expect(ask()).resolves.toBe(403);
    const deniedSentAt = sentAt;
    await expect(askOf(keptDenied)()).resolves.toBe(403);
    await rbac.createNamespacedRoleBinding({ namespace: 'secret-store', body: reportBinding });
    expect(await until(askOf(uncached), 200)).toBe(200);
    await expect(askOf(keptDenied)()).resolves.toBe(403);
    expect(await until(ask, 200)).toBe(200);
    const allowedSentAt = sentAt;
    const grantedAfter = Date.now() - deniedSentAt;
    expect(grantedAfter).toBeGreaterThanOrEqual(denyTtlMs - 50);

    // Allowed, and the permission is kept.
    await expect(askOf(keptAllowed)()).resolves.toBe(200);
    await rbac.deleteNamespacedRoleBinding({ namespace: 'secret-store', name: reportBinding.metadata.name });
    expect(await until(askOf(uncached), 403)).toBe(403);
    await expect(askOf(keptAllowed)()).resolves.toBe(200);
    expect(await until(ask, 403)).toBe(403);
    expect(Date.now() - allowedSentAt).toBeGreaterThanOrEqual(allowTtlMs - 50);
  });

  it('answers 503 and names system:auth-delegator when the reviewer may not create SubjectAccessReviews', async () => {
    const unbound = await boot({ kubeconfig: await kubeconfigFile(TOKEN_ONLY_REVIEWER) });
    const res = await get(unbound, '/secrets/db-password', apiToken).expect(503);
    expect(res.body.message).toBe('authorization is unavailable, retry later');
    expect(res.headers['retry-after']).toBe('5');
    expect(logger.lines.join('\n')).toMatch(
      /SubjectAccessReview .*system:serviceaccount:secret-store:token-reviews-only.*system:auth-delegator/s,
    );
    // Failures are not cached: once the reviewer gets the role, the next request goes through.
    await bindClusterRole(cp.kubeConfig, TOKEN_ONLY_REVIEWER, 'system:auth-delegator');
    expect(await until(() => get(unbound, '/secrets/db-password', apiToken).then((r) => r.status), 200)).toBe(200);
  });

  it('answers 503 while the API server is down, keeps cached decisions, and recovers without a restart', async () => {
    const quick = await boot({ requestTimeoutMs: 2000 });
    // The token review and the decision for "before" are cached; "during" has only its token review cached.
    await get(quick, '/secrets/before', apiToken).expect(200);
    await cp.stopApiServer();
    try {
      // The verdict is the 503 itself; how long it took is information (the timeout is proven in the security suite).
      const started = Date.now();
      const res = await get(quick, '/secrets/during', apiToken);
      console.log(`API server down: ${res.status} after ${Date.now() - started} ms`);
      expect(res.status).toBe(503);
      expect(res.body.message).toBe('authorization is unavailable, retry later');
      expect(res.headers['retry-after']).toBe('5');
      await get(quick, '/secrets/before', apiToken).expect(200);
    } finally {
      await cp.startApiServer();
    }
    expect(await until(() => get(quick, '/secrets/during', apiToken).then((r) => r.status), 200)).toBe(200);
  });

  it('never writes a token to the log', () => {
    const all = logger.lines.join('\n');
    expect(tokens.length).toBeGreaterThan(2);
    for (const t of tokens) {
      for (const part of t.split('.')) expect(all).not.toContain(part.slice(0, 16));
    }
  });
});

function kubeObjectsOf(yaml: string): KubernetesObject[] {
  return (loadAllYaml(yaml) as (KubernetesObject | null)[]).filter((o): o is KubernetesObject => o !== null);
}
