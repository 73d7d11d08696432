import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import { Controller, Get, type INestApplication, Logger, UseGuards } from '@nestjs/common';
import request from 'supertest';
import {
  AllowNamespaces,
  AllowServiceAccounts,
  Audience,
  Caller,
  type CallerIdentity,
  type K8sAuthModuleOptions,
  RequireAccess,
  ServiceAccountGuard,
  TOKEN_AUTHENTICATOR,
} from '../../../index';
import {
  bindClusterRole,
  type ControlPlane,
  countApiServerRequests,
  createPod,
  createServiceAccount,
  deletePod,
  mintServiceAccountToken,
  RecordingLogger,
  serviceAccountClaims,
  type ServiceAccountRef,
  signJwt,
  startControlPlane,
} from '../../../testing';
import { BindingWatches } from './binding-watches';
import { API, DATA_STORE, GuardedApps, mintToken, REVIEWER, sleep } from '../../guarded-apps.spec-support';
import { KubernetesApiClient } from '../../kube/kubernetes-api.client';
import { resolveOptions } from '../../module/resolved-options';
import type { BindingWatchAuthenticator } from './binding-watch.authenticator';

// `local+watch` against a real kube-apiserver: tokens verified locally, their service account and pod looked up in
// watches of the allowlisted callers. Deletions are seen from the watches, with no TokenReview per token. How long
// that takes is printed, not asserted: a busy machine may take longer, and no verdict here rests on its speed.

/** Allowlisted by name: watched with field selectors. */
const ROTATING: ServiceAccountRef = { namespace: 'api', name: 'rotating' };
/** Allowlisted through its namespace (data-store): watched as a whole namespace. */
const WORKER: ServiceAccountRef = { namespace: 'data-store', name: 'worker' };
/** Named by no allowlist: its tokens go to TokenReview. */
const OUTSIDER: ServiceAccountRef = { namespace: 'elsewhere', name: 'svc' };
/** A reviewer that may review tokens but not watch: its watches never sync. */
const NO_WATCH_REVIEWER: ServiceAccountRef = { namespace: 'secret-store', name: 'no-watch' };
const WATCH_ROLE = 'k8s-auth-binding-watch';
const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

@Controller()
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
class BindingsController {
  @Get('api')
  @AllowServiceAccounts('api:api', 'api:rotating')
  api(@Caller() caller: CallerIdentity) {
    return caller;
  }

  @Get('data')
  @AllowNamespaces('data-store')
  data() {
    return 'ok';
  }

  /** RBAC alone decides: no allowlist, so its callers are not watched. */
  @Get('rbac')
  @RequireAccess({ verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews' })
  rbac() {
    return 'ok';
  }
}

describe('local+watch: bindings checked from watches, against a real API server', () => {
  let cp: ControlPlane;
  let core: CoreV1Api;
  let apps: GuardedApps;
  let kubeconfig: string;
  let app: INestApplication;
  const logger = new RecordingLogger();
  let podCount = 0;

  const reviews = () => countApiServerRequests(cp.kubeConfig, 'tokenreviews');
  const get = (target: INestApplication, path: string, token: string) =>
    request(target.getHttpServer()).get(path).set('Authorization', `Bearer ${token}`);

  /**
   * Boots an app in `local+watch` mode and waits until its watches hold their first lists. Its staleness bound is
   * long unless `options` says otherwise: a PING answered late on a busy machine must not send tokens to TokenReview
   * in a spec that counts reviews.
   */
  async function bootWatching(options: K8sAuthModuleOptions = {}, wait = true): Promise<INestApplication> {
    const booted = await apps.boot(
      { kubeconfig, audiences: ['secret-store'], verification: 'local+watch', watchStalenessMs: 60_000, ...options },
      { listen: false },
    );
    if (wait) await booted.get<BindingWatchAuthenticator>(TOKEN_AUTHENTICATOR).whenSynced();
    return booted;
  }

  const watchesOf = (target: INestApplication) =>
    (target.get(TOKEN_AUTHENTICATOR) as unknown as { watches: BindingWatches }).watches;

  /** A new pod of `account` and a token bound to it. */
  async function podToken(account: ServiceAccountRef): Promise<{ pod: { name: string; uid: string }; token: string }> {
    const pod = await createPod(cp.kubeConfig, account, `${account.name}-${++podCount}`);
    return { pod, token: await mintToken(cp, account, ['secret-store'], pod) };
  }

  /**
   * Runs `revoke`, then asks every 50 ms until the token is refused, and prints how long that took (information, not
   * a verdict). The 45 s deadline only ends a hung test, with a clearer message than Jest's 60 s timeout: it is no
   * bound on the product's speed.
   */
  async function untilRefused(
    what: string,
    target: INestApplication,
    path: string,
    token: string,
    revoke: () => Promise<unknown>,
  ): Promise<void> {
    const started = Date.now();
    await revoke();
    for (;;) {
      const res = await get(target, path, token);
      if (res.status === 403) {
        expect(res.body.message).toBe('invalid token');
        console.log(`${what}: refused ${Date.now() - started} ms after the deletion`);
        return;
      }
      expect(res.status).toBe(200);
      if (Date.now() - started > 45_000) throw new Error('still accepted 45 s after the deletion');
      await sleep(50);
    }
  }

  beforeAll(async () => {
    cp = await startControlPlane();
    core = cp.kubeConfig.makeApiClient(CoreV1Api);
    apps = new GuardedApps(cp, [BindingsController], logger);
    for (const account of [API, ROTATING, DATA_STORE, WORKER, OUTSIDER, REVIEWER, NO_WATCH_REVIEWER]) {
      await createServiceAccount(cp.kubeConfig, account);
    }
    await cp.kubeConfig.makeApiClient(RbacAuthorizationV1Api).createClusterRole({
      body: {
        metadata: { name: WATCH_ROLE },
        rules: [{ apiGroups: [''], resources: ['pods', 'serviceaccounts'], verbs: ['get', 'list', 'watch'] }],
      },
    });
    for (const account of [REVIEWER, NO_WATCH_REVIEWER, OUTSIDER]) {
      await bindClusterRole(cp.kubeConfig, account, 'system:auth-delegator');
    }
    await bindClusterRole(cp.kubeConfig, REVIEWER, WATCH_ROLE);
    kubeconfig = await apps.kubeconfigFile(REVIEWER);
    Logger.overrideLogger(logger);
    app = await bootWatching();
  });

  afterAll(async () => {
    await apps?.close();
    await cp?.stop();
  });

  it("accepts watched callers' tokens with no TokenReview, also a token minted the moment its pod was created", async () => {
    const before = await reviews();
    const api = await podToken(API);
    const worker = await podToken(WORKER);
    const unbound = await mintToken(cp, API);
    for (let i = 0; i < 3; i++) {
      const res = await get(app, '/api', api.token).expect(200);
      expect(res.body).toMatchObject({ username: 'system:serviceaccount:api:api', podUid: api.pod.uid });
      await get(app, '/data', worker.token).expect(200);
      await get(app, '/api', unbound).expect(200);
    }
    expect(await reviews()).toBe(before);
  });

  it.each([
    ['a service account allowlisted by name', API, '/api'],
    ['a namespace allowlisted as a whole', WORKER, '/data'],
  ])('refuses the token of a deleted pod (%s), with no TokenReview', async (what, account, path) => {
    const { pod, token } = await podToken(account);
    await get(app, path, token).expect(200);
    const before = await reviews();
    await untilRefused(`deleted pod, ${what}`, app, path, token, () =>
      deletePod(cp.kubeConfig, account.namespace, pod.name),
    );
    await get(app, path, token).expect(403);
    expect(await reviews()).toBe(before);
  });

  it.each([
    ['by name', ROTATING, '/api'],
    ['through its namespace', WORKER, '/data'],
  ])(
    'refuses the tokens of a service account deleted and re-created under the same name (%s); new tokens pass',
    async (what, account, path) => {
      const { uid: oldUid } = await createServiceAccount(cp.kubeConfig, account);
      const old = await mintToken(cp, account);
      await get(app, path, old).expect(200);
      const before = await reviews();
      await untilRefused(`deleted service account, ${what}`, app, path, old, () =>
        core.deleteNamespacedServiceAccount({ namespace: account.namespace, name: account.name }),
      );
      expect(await reviews()).toBe(before);

      const { uid: newUid } = await createServiceAccount(cp.kubeConfig, account);
      expect(newUid).not.toBe(oldUid);
      const fresh = await mintToken(cp, account);
      await get(app, path, fresh).expect(200);
      await sleep(200);
      expect((await get(app, path, old).expect(403)).body.message).toBe('invalid token');
    },
  );

  it('accepts the token of a pod whose deletion a finalizer holds up for 60 s past its deletion time, as the API server does', async () => {
    const name = `${WORKER.name}-held`;
    const created = await core.createNamespacedPod({
      namespace: WORKER.namespace,
      body: {
        metadata: { name, finalizers: ['example.com/hold'] },
        spec: { serviceAccountName: WORKER.name, containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }] },
      },
    });
    const pod = { name, uid: created.metadata?.uid ?? '' };
    const token = await mintToken(cp, WORKER, ['secret-store'], pod);
    await get(app, '/data', token).expect(200);

    await core.deleteNamespacedPod({ namespace: WORKER.namespace, name, gracePeriodSeconds: 0 });
    await sleep(300);
    await get(app, '/data', token).expect(200);
    const pods = watchesOf(app).scopeOf(WORKER.namespace, WORKER.name)?.pods;
    expect(pods?.holds(name, pod.uid, Date.now())).toBe(true);
    expect(pods?.holds(name, pod.uid, Date.now() + 61_000)).toBe(false);

    const before = await reviews();
    await untilRefused('pod held by a finalizer', app, '/data', token, async () => {
      const held = await core.readNamespacedPod({ namespace: WORKER.namespace, name });
      held.metadata = { ...held.metadata, finalizers: [] };
      await core.replaceNamespacedPod({ namespace: WORKER.namespace, name, body: held });
    });
    expect(await reviews()).toBe(before);
  });

  it('sends the tokens of a caller no allowlist names to TokenReview, once per token', async () => {
    const token = await mintToken(cp, OUTSIDER);
    const before = await reviews();
    await get(app, '/rbac', token).expect(200);
    await get(app, '/rbac', token).expect(200);
    expect(await reviews()).toBe(before + 1);
  });

  it('sends tokens bound to a Secret, or to a node and no pod, to TokenReview', async () => {
    const secret = await core.createNamespacedSecret({ namespace: 'api', body: { metadata: { name: 'bound' } } });
    const node = await core.createNode({ body: { metadata: { name: 'node-1' } } });
    const bound = async (kind: 'Secret' | 'Node', object: { metadata?: { name?: string; uid?: string } }) =>
      (
        await mintServiceAccountToken(cp.kubeConfig, API, {
          audiences: ['secret-store'],
          expirationSeconds: 600,
          boundObject: { kind, name: object.metadata?.name ?? '', uid: object.metadata?.uid ?? '' },
        })
      ).token;
    const before = await reviews();
    await get(app, '/api', await bound('Secret', secret)).expect(200);
    await get(app, '/api', await bound('Node', node)).expect(200);
    expect(await reviews()).toBe(before + 2);
  });

  it('sends tokens to TokenReview while its watches have not synced (here: no right to watch), and says why', async () => {
    const unsynced = await bootWatching({ kubeconfig: await apps.kubeconfigFile(NO_WATCH_REVIEWER) }, false);
    const { token } = await podToken(API);
    const before = await reviews();
    await get(unsynced, '/api', token).expect(200);
    expect(await reviews()).toBe(before + 1);
    expect(logger.text()).toMatch(/needs get, list and watch on (pods|serviceaccounts) in namespace api/);
  });

  it('keeps only names and uids: the pods of a watched namespace as name → uid strings', async () => {
    const watches = new BindingWatches(new KubernetesApiClient(resolveOptions({ kubeconfig })), {
      stalenessMs: 2000,
      maxTombstones: 100,
    });
    watches.start({ namespaces: new Set(['data-store']), serviceAccounts: new Set() });
    try {
      await watches.whenSynced();
      const held = watches.scopeOf('data-store', 'any')?.pods.objects();
      const listed = (await core.listNamespacedPod({ namespace: 'data-store' })).items;
      expect(held?.size).toBe(listed.length);
      for (const pod of listed) expect(held?.get(pod.metadata?.name ?? '')).toBe(pod.metadata?.uid);
      for (const [name, uid] of held ?? []) {
        expect(typeof name).toBe('string');
        expect(uid).toMatch(UID);
      }
    } finally {
      watches.stop();
    }
  });

  it(
    'with the API server down past the staleness bound: every token goes to TokenReview (503 without one), also one ' +
      'accepted before; once it is back, the watches resume without a restart',
    async () => {
      const quick = await bootWatching({ watchStalenessMs: 1000 });
      const accepted = await podToken(API);
      const unseen = await podToken(API);
      await get(quick, '/api', accepted.token).expect(200);
      const scope = watchesOf(quick).scopeOf('api', 'api');

      await cp.stopApiServer();
      // The bound is measured on the watches' own evidence, not on a timer of the test's.
      while (scope?.isFresh(Date.now())) await sleep(100);
      for (const token of [accepted.token, unseen.token]) {
        const res = await get(quick, '/api', token).expect(503);
        expect(res.headers['retry-after']).toBe('5');
      }

      await cp.startApiServer();
      for (const deadline = Date.now() + 30_000; !scope?.isFresh(Date.now()); await sleep(100)) {
        if (Date.now() > deadline) throw new Error('the watches did not resume');
      }
      expect(logger.text()).toContain('watch of pods in api (spec.serviceAccountName=api) resumed');
      await get(quick, '/api', unseen.token).expect(200);
      await untilRefused('deleted pod, after the outage', quick, '/api', accepted.token, () =>
        deletePod(cp.kubeConfig, 'api', accepted.pod.name),
      );
      // The resumed watch sees the deletion itself. Reviews go uncounted here: on a busy machine this app's 1 s bound
      // may lapse for a moment and send a token to TokenReview, as it should. The deadline only ends a hung test.
      for (const deadline = Date.now() + 45_000; scope?.pods.holds(accepted.pod.name, accepted.pod.uid, Date.now()); ) {
        if (Date.now() > deadline) throw new Error('the resumed watch did not see the deletion');
        await sleep(100);
      }
    },
    120_000,
  );

  it("refuses a deleted pod's token with caching off too (maxCacheEntries: 0): nothing rests on cached objects", async () => {
    const uncached = await bootWatching({ maxCacheEntries: 0 });
    const { pod, token } = await podToken(API);
    await get(uncached, '/api', token).expect(200);
    const before = await reviews();
    await untilRefused('deleted pod, caching off', uncached, '/api', token, () =>
      deletePod(cp.kubeConfig, API.namespace, pod.name),
    );
    await get(uncached, '/api', token).expect(403);
    expect(await reviews()).toBe(before);
  });

  it('sends a token bound to a kind of object it does not know (a webhook configuration) to TokenReview', async () => {
    const key = cp.serviceAccountSigningKey;
    if (!key) throw new Error('the control plane has no signing key to hand');
    const account = await core.readNamespacedServiceAccount({ namespace: API.namespace, name: API.name });
    const tokens = ['validatingwebhookconfiguration', 'mutatingwebhookconfiguration'].map((kind) => {
      const claims = serviceAccountClaims({
        issuer: cp.issuer,
        namespace: API.namespace,
        serviceAccount: API.name,
        serviceAccountUid: account.metadata?.uid ?? '',
        audiences: ['secret-store'],
      });
      const k8s = claims['kubernetes.io'] as Record<string, unknown>;
      k8s[kind] = { name: 'policy', uid: randomUUID() };
      k8s['attestations'] = { 'admission-review-api-groups': ['apps'] };
      return signJwt(key, claims);
    });
    const before = await reviews();
    for (const token of tokens) {
      const res = await get(app, '/api', token).expect(403);
      expect(res.body.message).toBe('invalid token');
    }
    // TokenReview refuses them (no such webhook configuration), where a watch check alone would have let them in.
    expect(await reviews()).toBe(before + tokens.length);
  });
});
