import { CoreV1Api } from '@kubernetes/client-node';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import {
  countApiServerRequests,
  createPod,
  createServiceAccount,
  deletePod,
  type ServiceAccountRef,
} from '@k8s-auth/nestjs/testing';
import { SecretStoreGrpcClient } from '@k8s-auth/service-runtime/testing';
import { ACCOUNTS } from './support/environment';
import { decodeJwt, retimedClaims, signRs256, unsignedJwt, withEditedPayload } from './support/forge';
import { answered, call, type HttpOutcome, rawCall, type RawHeader, type RawRequest } from './support/http';
import { eventually, settledCount, sleep, type SuiteContext } from './support/context';
import { handlerCalls, startTargetApp, type TargetApp } from './support/target-app';

/** Tokens the attacks use, all minted by the control plane or signed during the run. */
interface Tokens {
  api: string;
  dataStore: string;
  otherNamespace: string;
  prefixName: string;
  prefixNamespace: string;
  otherAudience: string;
  apiServerAudience: string;
  expired: string;
  forgedValid: string;
  otherKey: string;
  unsigned: string;
  unsignedWithSignature: string;
  editedSubject: string;
  editedAudience: string;
}

interface Attack {
  name: string;
  /** The request against `/guarded`; the path is rewritten to `/` for the secret store. */
  request(tokens: Tokens): RawRequest;
  /** What the guard must answer (on the in-process target, which lets every header through). */
  expect: 401 | 403 | 'either';
  /**
   * What Node's strict HTTP parser answers instead, before any Nest code runs, in the secret-store
   * process: 400 for control characters, 431 for headers over 16 KiB.
   */
  nodeRefuses?: 400 | 431;
}

const NO_TOKEN = { name: 'no token at all', expect: 401 as const };

const bearer = (token: string): RawHeader => ['Authorization', `Bearer ${token}`];
const get = (...headers: RawHeader[]): RawRequest => ({ path: '/guarded', headers });
const insert = (token: string, at: number, what: string) => `${token.slice(0, at)}${what}${token.slice(at)}`;

const ATTACKS: Attack[] = [
  {
    name: 'token of another service account (data-store:data-store)',
    request: (t) => get(bearer(t.dataStore)),
    expect: 403,
  },
  {
    name: 'same account name in another namespace (other:api)',
    request: (t) => get(bearer(t.otherNamespace)),
    expect: 403,
  },
  {
    name: 'name sharing a prefix with the allowed one (api:api-admin)',
    request: (t) => get(bearer(t.prefixName)),
    expect: 403,
  },
  {
    name: 'namespace sharing a prefix with the allowed one (api-x:api)',
    request: (t) => get(bearer(t.prefixNamespace)),
    expect: 403,
  },
  { name: 'token for another audience (api)', request: (t) => get(bearer(t.otherAudience)), expect: 403 },
  {
    name: "legacy-style token (the API server's audience)",
    request: (t) => get(bearer(t.apiServerAudience)),
    expect: 403,
  },
  { name: 'expired token, signed with the cluster key', request: (t) => get(bearer(t.expired)), expect: 403 },
  { name: 'token signed by another key', request: (t) => get(bearer(t.otherKey)), expect: 403 },
  { name: 'unsigned token (alg none, empty signature)', request: (t) => get(bearer(t.unsigned)), expect: 'either' },
  {
    name: 'unsigned token (alg none, junk signature)',
    request: (t) => get(bearer(t.unsignedWithSignature)),
    expect: 403,
  },
  {
    name: 'claims edited after signing (data-store made api:api)',
    request: (t) => get(bearer(t.editedSubject)),
    expect: 403,
  },
  {
    name: 'claims edited after signing (audience api made secret-store)',
    request: (t) => get(bearer(t.editedAudience)),
    expect: 403,
  },
  {
    name: 'valid token in the query string',
    request: (t) => ({ path: `/guarded?access_token=${t.api}&token=${t.api}` }),
    expect: 401,
  },
  {
    name: 'valid token in a cookie',
    request: (t) => get(['Cookie', `access_token=${t.api}; token=${t.api}`]),
    expect: 401,
  },
  {
    name: 'two Authorization headers (valid one first)',
    request: (t) => get(bearer(t.api), bearer(t.dataStore)),
    expect: 401,
  },
  {
    name: 'two Authorization headers (the same valid token twice)',
    request: (t) => get(bearer(t.api), bearer(t.api)),
    expect: 401,
  },
  {
    name: 'Authorization and X-Client-Id with different tokens',
    request: (t) => get(bearer(t.api), ['X-Client-Id', t.dataStore]),
    expect: 401,
  },
  {
    name: 'Authorization and X-Client-Id with the same valid token',
    request: (t) => get(bearer(t.api), ['X-Client-Id', t.api]),
    expect: 401,
  },
  { name: 'X-Client-Id twice', request: (t) => get(['X-Client-Id', t.api], ['X-Client-Id', t.api]), expect: 401 },
  {
    name: 'control character (SOH) inside a valid token',
    request: (t) => get(bearer(insert(t.api, 40, '\x01'))),
    expect: 401,
    nodeRefuses: 400,
  },
  { name: 'NUL after a valid token', request: (t) => get(bearer(`${t.api}\x00`)), expect: 401, nodeRefuses: 400 },
  {
    name: 'DEL inside a valid token',
    request: (t) => get(bearer(insert(t.api, 100, '\x7f'))),
    expect: 401,
    nodeRefuses: 400,
  },
  {
    name: 'terminal escape sequence before a valid token',
    request: (t) => get(['Authorization', `Bearer \x1b[2J${t.api}`]),
    expect: 401,
    nodeRefuses: 400,
  },
  {
    name: 'UTF-8 character inside a valid token',
    request: (t) => get(['Authorization', Buffer.from(`Bearer ${insert(t.api, 60, 'é')}`, 'utf8')]),
    expect: 401,
  },
  {
    name: 'scheme spelled with a Cyrillic letter',
    request: (t) => get(['Authorization', Buffer.from(`Веarer ${t.api}`, 'utf8')]),
    expect: 401,
  },
  {
    name: 'zero-width space inside a valid token',
    request: (t) => get(['Authorization', Buffer.from(`Bearer ${insert(t.api, 30, '\u200b')}`, 'utf8')]),
    expect: 401,
  },
  {
    name: '64 KiB token',
    request: (t) => get(bearer(t.api.repeat(Math.ceil(65536 / t.api.length)).slice(0, 65536))),
    expect: 401,
    nodeRefuses: 431,
  },
  { name: 'whitespace-only Authorization', request: () => get(['Authorization', ' \t  \t ']), expect: 401 },
  { name: 'scheme and whitespace only', request: () => get(['Authorization', 'Bearer  \t ']), expect: 401 },
  { name: 'whitespace-only X-Client-Id', request: () => get(['X-Client-Id', '   ']), expect: 401 },
  {
    name: 'token split by a space',
    request: (t) => get(['Authorization', `Bearer ${insert(t.api, 50, ' ')}`]),
    expect: 401,
  },
  {
    name: 'Basic scheme carrying a valid token',
    request: (t) => get(['Authorization', `Basic ${t.api}`]),
    expect: 401,
  },
  {
    name: 'identity headers only (X-Remote-User, X-Remote-Group, Impersonate-User, X-Forwarded-User)',
    request: () =>
      get(
        ['X-Remote-User', 'system:serviceaccount:api:api'],
        ['X-Remote-Group', 'system:masters'],
        ['Impersonate-User', 'system:serviceaccount:api:api'],
        ['X-Forwarded-User', 'system:serviceaccount:api:api'],
      ),
    expect: 401,
  },
  {
    name: 'data-store token with X-Remote-User and Impersonate-User naming api:api',
    request: (t) =>
      get(
        bearer(t.dataStore),
        ['X-Remote-User', 'system:serviceaccount:api:api'],
        ['X-Remote-Group', 'system:serviceaccounts:api'],
        ['Impersonate-User', 'system:serviceaccount:api:api'],
      ),
    expect: 403,
  },
  {
    name: 'Proxy-Authorization instead of Authorization',
    request: (t) => get(['Proxy-Authorization', `Bearer ${t.api}`]),
    expect: 401,
  },
];

const TENANT = {
  worker: { namespace: 'tenant', name: 'worker' },
  rebuilt: { namespace: 'tenant', name: 'rebuilt' },
} satisfies Record<string, ServiceAccountRef>;

/** The in-process target's cache TTLs: short, so revocations show up within the run. */
const CACHE_TTL_MS = 2_000;
const NEGATIVE_CACHE_TTL_MS = 1_000;
/** kube-apiserver caches successful token authentications for about 10 s. */
const API_SERVER_TOKEN_CACHE_MS = 10_000;
/**
 * A local+watch store's refusal of a token after the DELETE of its pod or service account is polled this often; how
 * soon it comes is a figure, not a verdict. The deadline only ends a hung test: it is no bound on speed.
 */
const WATCH_POLL_MS = 50;
const WATCH_POLL_DEADLINE_MS = 45_000;
/** The local+watch store's `watchStalenessMs`: longer than Jest lets the case run. */
const WATCH_STALENESS_MS = 600_000;
/** Revocation through TokenReview is polled until this deadline: a hang-stopper far past TTL + the API server's cache. */
const REVOCATION_DEADLINE_MS = 60_000;

/**
 * Attacks: each must be refused (401 or 403) and never reach the handler. Every attack runs against
 * the in-process target (the guard behind a lenient HTTP server) and against the secret-store
 * process (the guard behind Node's strict parser, which refuses some requests before the guard).
 */
export function describeAttacks(ctx: SuiteContext): void {
  describe('attacks', () => {
    let target: TargetApp;
    let tokens: Tokens;
    const outcomes: { attack: string; where: string; status: number; reached: boolean }[] = [];

    const tried = (attack: string, where: string, outcome: HttpOutcome, reached: boolean) => {
      const accepted = reached || (answered(outcome) && outcome.status < 400);
      ctx.figures.attacks.tried++;
      if (accepted) ctx.figures.attacks.accepted++;
      outcomes.push({ attack, where, status: outcome.status, reached });
    };

    beforeAll(async () => {
      const { env } = ctx;
      target = await startTargetApp({
        kubeconfig: env.kubeconfigs.secretStore,
        logger: ctx.logger,
        cacheTtlMs: CACHE_TTL_MS,
        negativeCacheTtlMs: NEGATIVE_CACHE_TTL_MS,
      });
      ctx.registries.push(target.metrics);

      for (const account of [
        { namespace: 'other', name: 'api' },
        { namespace: 'api', name: 'api-admin' },
        { namespace: 'api-x', name: 'api' },
      ]) {
        await createServiceAccount(env.cp.kubeConfig, account);
      }
      const api = await env.mint(ACCOUNTS.api);
      const dataStore = await env.mint(ACCOUNTS.dataStore);
      const otherAudience = await env.mint(ACCOUNTS.api, { audiences: ['api'] });

      // Forged tokens copy the shape of a real one: its header (kid) and claims, with chosen times.
      const minted = decodeJwt(api);
      const now = Math.floor(Date.now() / 1000);
      const clusterKey = createPrivateKey(env.cp.serviceAccountSigningKey ?? '');
      const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      const valid = () => retimedClaims(minted.payload, now - 60, now + 540);
      const apiSa = (minted.payload['kubernetes.io'] as { serviceaccount: { uid: string } }).serviceaccount;

      tokens = {
        api,
        dataStore,
        otherNamespace: await env.mint({ namespace: 'other', name: 'api' }),
        prefixName: await env.mint({ namespace: 'api', name: 'api-admin' }),
        prefixNamespace: await env.mint({ namespace: 'api-x', name: 'api' }),
        otherAudience,
        // No audience asked for: the API server's own, what a legacy or default pod token carries.
        apiServerAudience: await env.mint(ACCOUNTS.api, { audiences: [] }),
        expired: signRs256(clusterKey, minted.header, retimedClaims(minted.payload, now - 7200, now - 3600)),
        forgedValid: signRs256(clusterKey, minted.header, valid()),
        otherKey: signRs256(otherKey, minted.header, valid()),
        unsigned: unsignedJwt(valid()),
        unsignedWithSignature: unsignedJwt(valid(), minted.signature),
        editedSubject: withEditedPayload(dataStore, (claims) => {
          claims['sub'] = 'system:serviceaccount:api:api';
          claims['kubernetes.io'] = { namespace: 'api', serviceaccount: { name: 'api', uid: apiSa.uid } };
        }),
        editedAudience: withEditedPayload(otherAudience, (claims) => {
          claims['aud'] = ['secret-store'];
        }),
      };
      for (const token of Object.values(tokens)) ctx.ledger.addToken(token);
    });

    afterAll(async () => {
      await target?.close();
      const refused = outcomes.filter((o) => o.status !== 0);
      console.log(
        `attacks: ${outcomes.length} tried; answers ${JSON.stringify(countBy(refused.map((o) => `${o.where} ${o.status}`)))}`,
      );
    });

    it('lets the genuine caller in, also with a token the test signed with the cluster key (the forging is faithful)', async () => {
      const before = handlerCalls.guarded;
      for (const token of [tokens.api, tokens.forgedValid]) {
        const res = await rawCall(ctx.ledger, target.port, get(bearer(token)));
        expect(answered(res) && res.status).toBe(200);
      }
      expect(handlerCalls.guarded).toBe(before + 2);
    });

    it.each(ATTACKS.map((a) => [a.name, a] as const))('refuses %s, in the guard', async (_name, attack) => {
      const before = handlerCalls.guarded;
      const res = await rawCall(ctx.ledger, target.port, attack.request(tokens));
      const reached = handlerCalls.guarded !== before;
      tried(attack.name, 'target', res, reached);
      expect(reached).toBe(false);
      expect(answered(res)).toBe(true);
      expect(attack.expect === 'either' ? [401, 403] : [attack.expect]).toContain(res.status);
    });

    it('refuses every attack in the secret-store process too (Node may refuse first), and its handler never runs', async () => {
      const handled = async () =>
        ((await fs.readFile(ctx.store.logFile, 'utf8')).match(/authenticated system:serviceaccount:/g) ?? []).length;
      const control = await rawCall(ctx.ledger, ctx.store.port, { path: '/', headers: [bearer(tokens.api)] });
      expect(answered(control) && control.status).toBe(200);
      await sleep(200);
      const before = await handled();
      const wrong: string[] = [];
      for (const attack of ATTACKS) {
        const request = attack.request(tokens);
        const path = String(request.path).replace('/guarded', '/');
        const res = await rawCall(ctx.ledger, ctx.store.port, { ...request, path });
        const allowed = [...(attack.expect === 'either' ? [401, 403] : [attack.expect]), attack.nodeRefuses];
        tried(attack.name, 'secret-store', res, false);
        if (!allowed.includes(res.status)) wrong.push(`${attack.name}: ${res.status}`);
      }
      await sleep(300);
      const reached = (await handled()) - before;
      if (reached > 0) ctx.figures.attacks.accepted += reached;
      expect(wrong).toEqual([]);
      expect(reached).toBe(0);
    });

    it('refuses every token attack over gRPC in the secret-store process too, and its handler never runs', async () => {
      const handled = async () =>
        (
          (await fs.readFile(ctx.store.logFile, 'utf8')).match(/authenticated system:serviceaccount:.* over gRPC/g) ??
          []
        ).length;
      const grpc = new SecretStoreGrpcClient(ctx.store.grpcTarget ?? '');
      try {
        const control = await grpc.call('Hello', {}, { authorization: `Bearer ${tokens.api}` });
        expect(control.code).toBe(0);
        await sleep(200);
        const before = await handled();
        const wrong: string[] = [];
        // The attacks that are one Authorization value grpc-js can send (printable ASCII, within its 8 KiB of
        // metadata); gRPC has no query string or cookie, and a client sends one authorization value at most.
        const single = ATTACKS.map((a) => ({ attack: a, headers: a.request(tokens).headers ?? [] })).filter(
          ({ headers }) =>
            headers.length === 1 &&
            headers[0][0].toLowerCase() === 'authorization' &&
            typeof headers[0][1] === 'string' &&
            /^[\x20-\x7e]{0,8000}$/.test(headers[0][1]),
        );
        for (const { attack, headers } of [...single, { attack: NO_TOKEN, headers: [] }]) {
          const metadata = Object.fromEntries(
            headers.map(([name, value]) => [String(name).toLowerCase(), String(value)]),
          );
          const answer = await grpc.call('Hello', {}, metadata);
          // UNAUTHENTICATED (16) for 401, PERMISSION_DENIED (7) for 403.
          const allowed: number[] = (attack.expect === 'either' ? [401, 403] : [attack.expect]).map((s) =>
            s === 401 ? 16 : 7,
          );
          ctx.figures.attacks.tried++;
          outcomes.push({ attack: attack.name, where: 'secret-store gRPC', status: answer.code, reached: false });
          if (!allowed.includes(answer.code)) wrong.push(`${attack.name}: ${answer.code} ${answer.details}`);
        }
        expect(single.length).toBeGreaterThan(10);
        await sleep(300);
        const reached = (await handled()) - before;
        if (reached > 0) ctx.figures.attacks.accepted += reached;
        expect(wrong).toEqual([]);
        expect(reached).toBe(0);
      } finally {
        grpc.close();
      }
    });

    it('refuses, after the cache TTL, a token of a deleted pod and one of a service account deleted and re-created under the same name', async () => {
      const { env } = ctx;
      const core = env.cp.kubeConfig.makeApiClient(CoreV1Api);
      await createServiceAccount(env.cp.kubeConfig, TENANT.worker);
      const { uid: rebuiltUid } = await createServiceAccount(env.cp.kubeConfig, TENANT.rebuilt);
      const pod = await createPod(env.cp.kubeConfig, TENANT.worker, 'worker-0');
      const podBound = await env.mint(TENANT.worker, { boundObject: { kind: 'Pod', name: pod.name, uid: pod.uid } });
      const ofRebuilt = await env.mint(TENANT.rebuilt);
      const send = (token: string) => rawCall(ctx.ledger, target.port, { path: '/tenant', headers: [bearer(token)] });

      const before = handlerCalls.tenant;
      for (const token of [podBound, ofRebuilt]) {
        const res = await send(token);
        expect(answered(res) && res.status).toBe(200);
      }
      expect(handlerCalls.tenant).toBe(before + 2);

      const deletedAt = Date.now();
      await deletePod(env.cp.kubeConfig, 'tenant', 'worker-0');
      await core.deleteNamespacedServiceAccount({ name: 'rebuilt', namespace: 'tenant' });
      await eventually(
        'the old service account gone',
        async () => {
          const list = await core.listNamespacedServiceAccount({ namespace: 'tenant' });
          return list.items.some((sa) => sa.metadata?.name === 'rebuilt') ? undefined : true;
        },
        10_000,
        100,
      );
      const { uid: newUid } = await createServiceAccount(env.cp.kubeConfig, TENANT.rebuilt);
      expect(newUid).not.toBe(rebuiltUid);

      // Accepted answers stay valid for the guard's TTL plus the API server's own token cache (about
      // CACHE_TTL_MS + API_SERVER_TOKEN_CACHE_MS): how long it took is printed, the deadline only ends a hung test.
      const revokedAfter: Record<string, number> = {};
      await Promise.all(
        Object.entries({ 'deleted pod': podBound, 're-created service account': ofRebuilt }).map(([what, token]) =>
          eventually(
            `a token of the ${what} refused`,
            async () => {
              const res = await send(token);
              if (!answered(res) || res.status === 200) return undefined;
              revokedAfter[what] = Date.now() - deletedAt;
              return res.status;
            },
            REVOCATION_DEADLINE_MS,
            500,
          ),
        ),
      );
      await sleep(CACHE_TTL_MS);
      const settled = handlerCalls.tenant;
      for (const [what, token] of [
        ['token bound to a deleted pod', podBound],
        ['token of a service account deleted and re-created with the same name', ofRebuilt],
      ] as const) {
        const res = await send(token);
        tried(what, 'target', res, handlerCalls.tenant !== settled);
        expect(answered(res) && res.status).toBe(403);
      }
      expect(handlerCalls.tenant).toBe(settled);
      console.log(
        `attacks: revoked after ${JSON.stringify(revokedAfter)} ms (guard TTL ${CACHE_TTL_MS} ms, API server cache ` +
          `about ${API_SERVER_TOKEN_CACHE_MS} ms)`,
      );
    });

    it(`refuses, from its watches and with no TokenReview, in a local+watch store: a token of a deleted pod and one of a service account deleted and re-created under the same name (whose new token passes)`, async () => {
      const { env } = ctx;
      const core = env.cp.kubeConfig.makeApiClient(CoreV1Api);
      const reviews = () => countApiServerRequests(env.cp.kubeConfig, 'tokenreviews');
      const settledReviews = () => settledCount(reviews, 30_000);
      // The store's routes allowlist api:api: it watches that service account and its pods in namespace api, with
      // the rights of k8s/base's secret-store-watch-rbac.yaml.
      // Watches that count as fresh through any pause in their PINGs: a busy machine cannot send a token to TokenReview,
      // so every answer here comes from the watches. The staleness bound itself is the partition fault's subject.
      const store = await env.startSecretStore({
        env: { VERIFICATION: 'local+watch', WATCH_STALENESS_MS: String(WATCH_STALENESS_MS) },
      });
      const send = (token: string) => call(ctx.ledger, store.url, { headers: { authorization: `Bearer ${token}` } });
      /** From the start of the DELETE to the first 403, polled every WATCH_POLL_MS; 200 meanwhile, nothing else. */
      const refusedAfter = async (what: string, token: string, remove: () => Promise<unknown>): Promise<number> => {
        const started = performance.now();
        await remove();
        for (;;) {
          const res = await send(token);
          const ms = performance.now() - started;
          if (answered(res) && res.status === 403) return ms;
          if (res.status !== 200) throw new Error(`a token of the ${what}: answered ${res.status} while polled`);
          if (ms > WATCH_POLL_DEADLINE_MS)
            throw new Error(`a token of the ${what}: still accepted after ${Math.round(ms)} ms`);
          await sleep(WATCH_POLL_MS);
        }
      };
      let accountDeleted = false;
      try {
        // Until its watches hold their first lists, the store asks TokenReview: waited out, not counted.
        await env.servedFromWatches(send);

        const pod = await createPod(env.cp.kubeConfig, ACCOUNTS.api, 'api-watched-0');
        const podBound = await env.mint(ACCOUNTS.api, { boundObject: { kind: 'Pod', ...pod } });
        const ofAccount = await env.mint(ACCOUNTS.api);
        // Accepted once, then sent only after the re-creation: refused by uid, not because it was refused before.
        const ofAccountIdle = await env.mint(ACCOUNTS.api);
        const reviewsBefore = await settledReviews();
        for (const token of [podBound, ofAccount, ofAccountIdle]) {
          const res = await send(token);
          expect(answered(res) && res.status).toBe(200);
        }

        const podMs = await refusedAfter('deleted pod', podBound, () =>
          deletePod(env.cp.kubeConfig, ACCOUNTS.api.namespace, pod.name),
        );
        const oldUid = (
          await core.readNamespacedServiceAccount({ name: ACCOUNTS.api.name, namespace: ACCOUNTS.api.namespace })
        ).metadata?.uid;
        accountDeleted = true;
        const serviceAccountMs = await refusedAfter('deleted service account', ofAccount, () =>
          core.deleteNamespacedServiceAccount({ name: ACCOUNTS.api.name, namespace: ACCOUNTS.api.namespace }),
        );
        await eventually(
          'the old service account gone',
          async () => {
            const list = await core.listNamespacedServiceAccount({ namespace: ACCOUNTS.api.namespace });
            return list.items.some((sa) => sa.metadata?.name === ACCOUNTS.api.name) ? undefined : true;
          },
          10_000,
          100,
        );
        const { uid: newUid } = await createServiceAccount(env.cp.kubeConfig, ACCOUNTS.api);
        expect(newUid).not.toBe(oldUid);

        const fresh = await send(await env.mint(ACCOUNTS.api));
        const old: [string, HttpOutcome][] = [];
        for (const [what, token] of [
          ['token bound to a deleted pod (local+watch)', podBound],
          ['token of a service account deleted and re-created, refused since (local+watch)', ofAccount],
          ['token of a service account deleted and re-created, unsent since (local+watch)', ofAccountIdle],
        ] as const) {
          const res = await send(token);
          tried(what, 'secret-store local+watch', res, false);
          old.push([what, res]);
        }
        const spent = (await settledReviews()) - reviewsBefore;
        ctx.figures.watchRevocation = { podMs, serviceAccountMs, reviews: spent };
        console.log(
          `attacks: local+watch store refused a deleted pod's token after ${Math.round(podMs)} ms, a deleted ` +
            `service account's after ${Math.round(serviceAccountMs)} ms (polled every ${WATCH_POLL_MS} ms); ` +
            `re-created: new token ${fresh.status}, old ones ${old.map(([, res]) => res.status).join(', ')}; ` +
            `${spent} TokenReviews`,
        );
        expect(answered(fresh) && fresh.status).toBe(200);
        expect(old.filter(([, res]) => res.status !== 403).map(([what, res]) => `${what}: ${res.status}`)).toEqual([]);
        expect(spent).toBe(0);
      } finally {
        await store.stop();
        if (accountDeleted) {
          // The areas after this one call with api:api: its kubeconfig and token files again, for the new uid.
          await createServiceAccount(env.cp.kubeConfig, ACCOUNTS.api);
          await env.renewCredentials('api');
        }
      }
    });
  });
}

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}
