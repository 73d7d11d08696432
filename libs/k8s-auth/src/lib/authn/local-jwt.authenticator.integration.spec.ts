import { RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { Controller, Get, type INestApplication, UseGuards } from '@nestjs/common';
import { createHmac, createPublicKey, generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import request from 'supertest';
import {
  AllowServiceAccounts,
  Audience,
  Caller,
  type CallerIdentity,
  type K8sAuthModuleOptions,
  ServiceAccountGuard,
} from '../../index';
import {
  bindClusterRole,
  type ControlPlane,
  countApiServerRequests,
  createPod,
  createServiceAccount,
  deletePod,
  kubernetesKeyId,
  type ServiceAccountRef,
  serviceAccountClaims,
  signJwt,
  RecordingLogger,
  startControlPlane,
} from '../../testing';
import { API, DATA_STORE, GuardedApps, mintToken, REVIEWER, sleep } from '../guarded-apps.spec-support';
import { DEFAULTS } from '../module/k8s-auth.constants';
import { resolveOptions } from '../module/resolved-options';
import { KubernetesApiClient, KubernetesApiError } from '../kube/kubernetes-api.client';

// Every decision of local verification against a real kube-apiserver, side by side with what TokenReview decides
// for the same token: tokens are minted through TokenRequest, or signed here at run time with the API server's own
// signing key (cp.serviceAccountSigningKey) or with keys it does not know.

@Controller()
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class SecretsController {
  @Get('secret')
  secret(@Caller() caller: CallerIdentity) {
    return caller;
  }
}

describe('local verification against a real API server', () => {
  let cp: ControlPlane;
  let dir: string;
  let kubeconfig: string;
  let apiUid: string;
  /** A public key file the API server trusts besides its signing key: rewritten to rotate keys in. */
  let extraKeyFile: string;
  let apps: GuardedApps;
  const logger = new RecordingLogger();

  let local: INestApplication;
  let localReview: INestApplication;
  let review: INestApplication;

  const boot = (options: K8sAuthModuleOptions) =>
    apps.boot({ kubeconfig, audiences: ['secret-store'], ...options }, { listen: false });

  const get = (app: INestApplication, token: string) =>
    request(app.getHttpServer()).get('/secret').set('Authorization', `Bearer ${token}`);

  /** Status and message from the local app and from the TokenReview app, which must agree. */
  async function decisions(token: string): Promise<{ local: string; review: string }> {
    const show = (r: request.Response) => `${r.status} ${r.status === 200 ? '' : r.body.message}`.trim();
    return { local: show(await get(local, token)), review: show(await get(review, token)) };
  }

  const mint = (account: ServiceAccountRef, audiences?: string[], pod?: { name: string; uid: string }) =>
    mintToken(cp, account, audiences, pod);

  /** A token with the claims the API server would write for api:api, signed with `key`. */
  const signed = (key: string | KeyObject, overrides: Record<string, unknown> = {}, header = {}) =>
    signJwt(
      key,
      {
        ...serviceAccountClaims({
          issuer: cp.issuer,
          namespace: 'api',
          serviceAccount: 'api',
          serviceAccountUid: apiUid,
          audiences: ['secret-store'],
        }),
        ...overrides,
      },
      header,
    );

  const signingKey = () => {
    if (!cp.serviceAccountSigningKey) throw new Error('an external cluster does not give its signing key');
    return cp.serviceAccountSigningKey;
  };

  const jwksFetches = (app: INestApplication) => {
    const spy = jest.spyOn(app.get(KubernetesApiClient), 'get');
    return () => spy.mock.calls.filter(([path]) => path === '/openid/v1/jwks').length;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'local-verification-'));
    extraKeyFile = join(dir, 'extra-keys.pem');
    const throwaway = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    writeFileSync(extraKeyFile, throwaway.export({ type: 'spki', format: 'pem' }));
    cp = await startControlPlane({ apiServerArgs: [`--service-account-key-file=${extraKeyFile}`] });
    for (const account of [API, DATA_STORE, REVIEWER]) await createServiceAccount(cp.kubeConfig, account);
    apiUid = (await createServiceAccount(cp.kubeConfig, API)).uid;
    await bindClusterRole(cp.kubeConfig, REVIEWER, 'system:auth-delegator');
    apps = new GuardedApps(cp, [SecretsController], logger);
    // The reviewer's own credentials: discovery and JWKS are read as this service account, not as an administrator.
    kubeconfig = await apps.kubeconfigFile(REVIEWER);

    local = await boot({ verification: 'local' });
    localReview = await boot({ verification: 'local+review', cacheTtlMs: 1000 });
    review = await boot({});
  });

  afterAll(async () => {
    if (process.env['DEBUG_LOG']) console.log(logger.lines.join('\n'));
    await apps?.close();
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets a valid token through, with the same caller identity TokenReview gives', async () => {
    const pod = await createPod(cp.kubeConfig, API, 'api-0');
    const token = await mint(API, ['other', 'secret-store'], pod);
    const fromLocal = (await get(local, token).expect(200)).body;
    const fromReview = (await get(review, token).expect(200)).body;
    expect(fromLocal).toEqual(fromReview);
    expect(fromLocal).toMatchObject({ username: 'system:serviceaccount:api:api', podName: 'api-0', podUid: pod.uid });
    expect((await get(localReview, token).expect(200)).body).toEqual(fromReview);
  });

  it('verifies without a TokenReview, and refuses forgeries in local+review without one', async () => {
    const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
    await get(local, await mint(API)).expect(200);
    await get(localReview, signed(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)).expect(403);
    expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before);
  });

  it('refuses another audience with "wrong audience"', async () => {
    expect(await decisions(await mint(API, ['data-store']))).toEqual({
      local: '403 wrong audience',
      review: '403 wrong audience',
    });
    // A token for the API server itself (the default pod token) is not for us either.
    expect((await decisions(await mint(API, []))).local).toBe('403 wrong audience');
  });

  it('refuses a service account the route does not allow with "caller not allowed"', async () => {
    expect(await decisions(await mint(DATA_STORE))).toEqual({
      local: '403 caller not allowed',
      review: '403 caller not allowed',
    });
  });

  it('accepts a token signed here with the API server key and real claims, as TokenReview does', async () => {
    expect(await decisions(signed(signingKey()))).toEqual({ local: '200', review: '200' });
  });

  it.each([
    [
      'an expired token',
      () => {
        const iat = Math.floor(Date.now() / 1000) - 7200;
        return signed(signingKey(), { iat, nbf: iat, exp: iat + 3600 });
      },
    ],
    ['a token not valid yet', () => signed(signingKey(), { nbf: Math.floor(Date.now() / 1000) + 600 })],
    [
      'a key the API server does not know',
      () => signed(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey),
    ],
    [
      'an ECDSA key the API server does not know',
      () => signed(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
    ],
    ['an issuer that is not the cluster', () => signed(signingKey(), { iss: 'https://issuer.example.com' })],
    [
      "a stranger's key under the API server's kid",
      () => {
        const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
        return signed(stranger, {}, { kid: kubernetesKeyId(signingKey()) });
      },
    ],
    ['a token without the kubernetes.io claims', () => signed(signingKey(), { 'kubernetes.io': undefined })],
    [
      'alg none',
      () => {
        const [, payload] = signed(signingKey()).split('.');
        return `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${payload}.AAAA`;
      },
    ],
    [
      'alg HS256 keyed with the public key',
      () => {
        // The classic confusion: an HMAC whose secret is the verifier's public key.
        const [, payload] = signed(signingKey()).split('.');
        const header = Buffer.from(JSON.stringify({ alg: 'HS256', kid: kubernetesKeyId(signingKey()) })).toString(
          'base64url',
        );
        const secret = createPublicKey(signingKey()).export({ type: 'spki', format: 'pem' });
        return `${header}.${payload}.${createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url')}`;
      },
    ],
  ])('refuses %s with "invalid token", as TokenReview does', async (_what, forge) => {
    expect(await decisions(forge())).toEqual({ local: '403 invalid token', review: '403 invalid token' });
  });

  it.each(['validatingwebhookconfiguration', 'mutatingwebhookconfiguration'])(
    'refuses a token bound to a %s, a kind it does not know: local refuses it, local+review asks TokenReview',
    async (kind) => {
      const claims = serviceAccountClaims({
        issuer: cp.issuer,
        namespace: 'api',
        serviceAccount: 'api',
        serviceAccountUid: apiUid,
        audiences: ['secret-store'],
      });
      const k8s = claims['kubernetes.io'] as Record<string, unknown>;
      k8s[kind] = { name: 'policy', uid: randomUUID() };
      k8s['attestations'] = { 'admission-review-api-groups': ['apps'] };
      const token = signJwt(signingKey(), claims);
      const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      expect(await decisions(token)).toEqual({ local: '403 invalid token', review: '403 invalid token' });
      expect((await get(localReview, token)).status).toBe(403);
      // One TokenReview for the review app, one for local+review; none for local.
      expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before + 2);
      expect(logger.text()).toContain(
        `"${kind}", "attestations" of kubernetes.io bind it to objects only a TokenReview`,
      );
    },
  );

  it('refuses a token that never expires, which TokenReview would accept', async () => {
    // Only revocation could end such a token's life, and local verification cannot see revocation.
    expect(await decisions(signed(signingKey(), { exp: undefined }))).toEqual({
      local: '403 invalid token',
      review: '200',
    });
  });

  it('refuses a real token whose claims were edited (another account, another namespace, a later exp)', async () => {
    const token = await mint(API);
    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const edits = [
      { ...claims, exp: claims.exp + 86_400 },
      { ...claims, aud: ['secret-store', 'data-store'] },
      {
        ...claims,
        sub: 'system:serviceaccount:kube-system:default',
        'kubernetes.io': { ...claims['kubernetes.io'], namespace: 'kube-system' },
      },
    ];
    for (const edited of edits) {
      const forged = `${header}.${Buffer.from(JSON.stringify(edited)).toString('base64url')}.${signature}`;
      expect(await decisions(forged)).toEqual({ local: '403 invalid token', review: '403 invalid token' });
    }
    await get(local, token).expect(200);
  });

  it('answers 401 to an unsigned token with an empty signature, before any verification', async () => {
    const [, payload] = signed(signingKey()).split('.');
    const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${payload}.`;
    await get(local, unsigned).expect(401);
  });

  it('fetches the keys again for an unknown kid, rate-limited, and picks up a key the API server rotates in', async () => {
    const app = await boot({ verification: 'local', jwksMinRefreshIntervalMs: 1500 });
    const fetches = jwksFetches(app);
    await get(app, await mint(API)).expect(200); // keys fetched at start-up (or now)
    const atStart = fetches();
    await sleep(1500);

    const unknownKid = signed(signingKey(), {}, { kid: 'no-such-key' });
    expect((await get(app, unknownKid).expect(403)).body.message).toBe('invalid token');
    expect(fetches()).toBe(atStart + 1);
    await get(app, unknownKid).expect(403);
    expect(fetches()).toBe(atStart + 1); // not again within the interval

    // Rotation: the API server starts trusting a new key; a token signed with it arrives before any refresh.
    const rotated = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(extraKeyFile, rotated.publicKey.export({ type: 'spki', format: 'pem' }));
    await cp.stopApiServer();
    await cp.startApiServer();
    await sleep(1500);
    const token = signed(rotated.privateKey);
    await get(review, token).expect(200); // the API server accepts the new key
    await get(app, token).expect(200);
    expect(fetches()).toBe(atStart + 2);
  });

  it('takes a key the API server rotates in during a flood of unknown key ids on its first token, fetching the keys at most once per jwksMinRefreshIntervalMs', async () => {
    const interval = DEFAULTS.jwksMinRefreshIntervalMs;
    const app = await apps.boot({ kubeconfig, audiences: ['secret-store'], verification: 'local' }, { listen: true });
    const url = await app.getUrl();
    const send = (token: string) => request(url).get('/secret').set('Authorization', `Bearer ${token}`);
    const fetches = jwksFetches(app);
    await send(await mint(API)).expect(200);

    // Junk key ids, each new, from 16 callers at once, each sending its next as soon as it is answered.
    const junkKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    let junk = 0;
    let flooding = true;
    const junkAnswers: Record<string, number> = {};
    const flood = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (flooding) {
          const answer = await send(signed(junkKey, {}, { kid: `junk-${junk++}` })).then(
            (res) => String(res.status),
            (err: Error) => err.message,
          );
          junkAnswers[answer] = (junkAnswers[answer] ?? 0) + 1;
        }
      }),
    );
    try {
      await sleep(2 * interval);
      const rotated = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      writeFileSync(extraKeyFile, rotated.publicKey.export({ type: 'spki', format: 'pem' }));
      await cp.stopApiServer();
      await cp.startApiServer();
      // Published once the API server is ready again; a caller of the new key tries at once and every 50 ms after,
      // with the same token, until it is let in.
      const publishedAt = performance.now();
      const fetchesBefore = fetches();
      const junkBefore = junk;
      const token = signed(rotated.privateKey);
      const answers: number[] = [];
      while (answers.at(-1) !== 200 && performance.now() - publishedAt < 30_000) {
        if (answers.length > 0) await sleep(50);
        answers.push((await send(token)).status);
      }
      const acceptedMs = performance.now() - publishedAt;
      const fetched = fetches() - fetchesBefore;
      console.log(
        `unknown-kid flood (${junk - junkBefore} junk key ids meanwhile; answers ${JSON.stringify(junkAnswers)}): ` +
          `the new key was let in ${Math.round(acceptedMs)} ms after the API server was ready with it, on try ` +
          `${answers.length} (${[...new Set(answers)].join(', ')}); ${fetched} JWKS fetches in that time`,
      );
      expect(answers.at(-1)).toBe(200);
      // Never refused: a token of a key id not held waits for the next fetch rather than being refused (and its
      // refusal cached); 503 only while the last fetch failed (the API server was down).
      expect(answers.filter((status) => status !== 503 && status !== 200)).toEqual([]);
      expect(fetched).toBeLessThanOrEqual(Math.ceil(acceptedMs / interval) + 1);
    } finally {
      flooding = false;
      await flood;
    }
  });

  it('keeps answering in local mode while the API server is down; local+review and TokenReview cannot', async () => {
    const cached = await mint(API);
    await get(localReview, cached).expect(200);
    const fresh = await mint(API);
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const forged = signed(stranger, {}, { kid: kubernetesKeyId(signingKey()) });
    const unknownKid = signed(stranger);
    const quickLocalReview = await boot({ verification: 'local+review', requestTimeoutMs: 1000, cacheTtlMs: 60_000 });
    await get(quickLocalReview, cached).expect(200);
    const quickReview = await boot({ requestTimeoutMs: 1000 });
    const eagerLocal = await boot({ verification: 'local', requestTimeoutMs: 1000, jwksMinRefreshIntervalMs: 0 });
    await get(eagerLocal, cached).expect(200);
    await cp.stopApiServer();
    try {
      await get(local, fresh).expect(200);
      expect((await get(local, forged).expect(403)).body.message).toBe('invalid token');
      // A key id it has never seen may be a key added since: it cannot look, so it answers "unavailable".
      await get(eagerLocal, unknownKid).expect(503);
      await get(eagerLocal, fresh).expect(200);
      await get(quickLocalReview, cached).expect(200); // reviewed before the outage
      const unavailable = await get(quickLocalReview, fresh).expect(503);
      expect(unavailable.headers['retry-after']).toBe('5');
      await get(quickReview, fresh).expect(503);
      // A new app in local mode has no keys yet: it cannot verify anything.
      const coldLocal = await boot({ verification: 'local', requestTimeoutMs: 1000 });
      expect((await get(coldLocal, fresh).expect(503)).body.message).toBe('authentication is unavailable, retry later');
    } finally {
      await cp.startApiServer();
    }
    await get(quickLocalReview, fresh).expect(200);
  });

  it("refuses a deleted pod's token in local+review after the cache TTL, while local accepts it until it expires", async () => {
    const pod = await createPod(cp.kubeConfig, API, 'api-doomed');
    const token = await mint(API, ['secret-store'], pod);
    await get(local, token).expect(200);
    await get(localReview, token).expect(200);
    await deletePod(cp.kubeConfig, API.namespace, pod.name);
    // local+review caches its TokenReview for 1 s here; the API server's own cache lasts about 10 s.
    const deadline = Date.now() + 30_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await sleep(1000);
      status = (await get(localReview, token)).status;
    }
    expect(status).toBe(403);
    expect((await get(localReview, token)).body.message).toBe('invalid token');
    await get(local, token).expect(200);
  });

  describe('while its service account may not read the keys (issuer discovery not granted)', () => {
    // The API server grants OIDC discovery to every service account through this bootstrap binding; without it, an
    // app in local mode starts with no keys.
    const DISCOVERY_BINDING = 'system:service-account-issuer-discovery';
    const MIN_REFRESH_MS = 10_000;

    /** Whether the reviewer (the app's own account) may read the discovery document now. */
    async function mayReadDiscovery(): Promise<boolean> {
      const client = new KubernetesApiClient(resolveOptions({ kubeconfig, retries: 0 }));
      try {
        await client.get('/.well-known/openid-configuration');
        return true;
      } catch (err) {
        if (err instanceof KubernetesApiError && err.failure === 'forbidden') return false;
        throw err;
      } finally {
        client.onApplicationShutdown();
      }
    }

    /** Waits for `condition`; the deadline only ends a hung test, it is no bound on speed. */
    async function until(condition: () => Promise<boolean>): Promise<void> {
      const deadline = Date.now() + 30_000;
      while (!(await condition())) {
        if (Date.now() > deadline) throw new Error('RBAC did not change within 30 s');
        await sleep(100);
      }
    }

    /** The app's `k8s_auth_jwks_fetches_total`, by outcome. */
    async function keyFetches(metrics: Registry): Promise<{ success: number; error: number }> {
      const values = (await metrics.getSingleMetric('k8s_auth_jwks_fetches_total')?.get())?.values ?? [];
      const of = (outcome: string) => values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;
      return { success: of('success'), error: of('error') };
    }

    it('answers 503 with Retry-After, and fetches the keys at most once per jwksMinRefreshIntervalMs', async () => {
      const rbac = cp.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
      const binding = await rbac.readClusterRoleBinding({ name: DISCOVERY_BINDING });
      const token = await mint(API);
      const metrics = new Registry();
      let app: INestApplication;
      // Fetches start at most once per interval from the one at start-up: this many, at most, by now. One while the
      // test runs within the interval; more only if this machine is slow, never one per request.
      let bootStarted = 0;
      const mostFetches = () => 1 + Math.floor((Date.now() - bootStarted) / MIN_REFRESH_MS);
      await rbac.deleteClusterRoleBinding({ name: DISCOVERY_BINDING });
      try {
        await until(async () => !(await mayReadDiscovery()));
        bootStarted = Date.now();
        app = await boot({ verification: 'local', jwksMinRefreshIntervalMs: MIN_REFRESH_MS, metrics });
        for (let i = 0; i < 20; i++) {
          const answer = await get(app, token).expect(503);
          expect(answer.headers['retry-after']).toBe('5');
          expect(answer.body.message).toBe('authentication is unavailable, retry later');
        }
        const failed = await keyFetches(metrics);
        console.log(`no discovery: 20 requests, ${failed.error} failed key fetches in ${Date.now() - bootStarted} ms`);
        expect(failed.success).toBe(0);
        expect(failed.error).toBeGreaterThanOrEqual(1);
        expect(failed.error).toBeLessThanOrEqual(mostFetches());
      } finally {
        // Other tests need it; the API server would recreate it only at its next start.
        const { name, labels, annotations } = binding.metadata ?? {};
        await rbac.createClusterRoleBinding({
          body: { metadata: { name, labels, annotations }, roleRef: binding.roleRef, subjects: binding.subjects },
        });
      }

      // Granted again: once the interval since the last attempt is over, a request fetches the keys, and is let
      // through; until then, requests are answered 503 without a fetch.
      await until(mayReadDiscovery);
      await sleep(bootStarted + MIN_REFRESH_MS - Date.now());
      for (const deadline = Date.now() + 30_000; (await get(app, token)).status !== 200; await sleep(500)) {
        if (Date.now() > deadline) throw new Error('the keys were not fetched 30 s past the interval');
      }
      const fetched = await keyFetches(metrics);
      expect(fetched.success).toBe(1);
      expect(fetched.success + fetched.error).toBeLessThanOrEqual(mostFetches());
    }, 120_000);
  });
});
