import { type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import axios, { type AxiosInstance } from 'axios';
import { promises as fs } from 'node:fs';
import { Agent, createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { attachServiceAccountToken, K8sAuthModule, TokenSources } from '@k8s-auth/nestjs';
import { countApiServerRequests, createPod, deletePod } from '@k8s-auth/nestjs/testing';
import { ApiServerProxy } from '@k8s-auth/internal/testing';
import { eventually, sleep, type SuiteContext } from './support/context';
import { ACCOUNTS, LASTING_TOKEN_CACHE, type RunningService } from './support/environment';
import { answered, call, canConnect, type HttpOutcome } from './support/http';
import { Load, unexpected5xx } from './support/load';

/** The services' `requestTimeoutMs` (the library's default): a review that takes longer fails with 503. */
const REVIEW_TIMEOUT_MS = 5_000;
/**
 * How long a stopped service is waited for: below Fastify's 72 s keep-alive timeout, so an exit that waits for idle
 * connections never comes in time, on any machine. The exit time is a figure (Kubernetes' grace period is 30 s).
 */
const EXIT_DEADLINE_MS = 60_000;
/** The promise of local+watch on default options: no deleted pod's token accepted longer than this after its DELETE. */
const PARTITION_BOUND_MS = 3_000;
/** How long the partition lasts: past the watches' PING deadline (10 s), so that their connection is replaced. */
const PARTITION_MS = 12_000;
/** During the partition, each token is sent this often, without waiting for the answers before. */
const PARTITION_SEND_EVERY_MS = 250;
/** local+watch's default `watchStalenessMs`, and a margin: past it, its watches count as stale on any machine. */
const PAST_WATCH_BOUND_MS = 2_000 + 500;

type Mode = 'tokenReview' | 'local' | 'local+review' | 'local+watch';
type Fault = 'down' | 'slow' | 'silent';
/**
 * The library README's table "When the API server fails": per mode, the status of a token whose answer was cached
 * before the fault, and of a token first sent during it.
 */
const FAILURE_SEMANTICS: Record<Mode, { cached: number; fresh: number }> = {
  tokenReview: { cached: 200, fresh: 503 },
  local: { cached: 200, fresh: 200 },
  'local+review': { cached: 200, fresh: 503 },
  // Its answers come from the watches, not from a cached review: once they are stale, there is nothing to stand on.
  'local+watch': { cached: 503, fresh: 503 },
};

/**
 * Faults: Kubernetes misbehaves or the process is told to stop, under load. Nothing may be lost
 * (every request gets an answer), and no 5xx but 503 (which says "retry later") may be answered.
 */
export function describeFaults(ctx: SuiteContext): void {
  describe('faults', () => {
    let api: RunningService;
    let proxy: ApiServerProxy;
    let viaProxy: string;
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

    /**
     * Counts a scenario into the figures and returns its 5xx other than 503. Lost: a request owed a
     * 200 that did not get one, or any request that got no answer at all.
     */
    const account = (owed200: HttpOutcome[], others: HttpOutcome[] = []) => {
      ctx.figures.faults.scenarios++;
      ctx.figures.faults.lost +=
        owed200.filter((o) => o.status !== 200).length + others.filter((o) => !answered(o)).length;
      const bad = unexpected5xx([...owed200, ...others]);
      ctx.figures.faults.unexpected5xx += bad;
      return bad;
    };

    beforeAll(async () => {
      api = await ctx.env.startApi(ctx.store.url);
      proxy = new ApiServerProxy({ target: { host: '127.0.0.1', port: Number(new URL(ctx.env.cp.server).port) } });
      viaProxy = await ctx.env.kubeconfigVia('secretStore', await proxy.start());
    });

    afterAll(async () => {
      await api?.stop();
      await proxy?.stop();
    });

    it('API server stopped under load: cached callers keep 200, new callers get 503 with Retry-After at once, and get in after the restart', async () => {
      const { env, store } = ctx;
      const cached = await env.mint(ACCOUNTS.api);
      const [newcomer, afterRestart] = [await env.mint(ACCOUNTS.api), await env.mint(ACCOUNTS.api)];
      for (const res of [
        await call(ctx.ledger, `${api.url}/`),
        await call(ctx.ledger, store.url, { headers: bearer(cached) }),
      ]) {
        expect(answered(res) && res.status).toBe(200);
      }

      const load = new Load({
        'api GET / (its token reviewed and cached by the store)': () => call(ctx.ledger, `${api.url}/`),
        'store GET / with a cached token': () => call(ctx.ledger, store.url, { headers: bearer(cached) }),
      });
      await sleep(300);
      const logBefore = (await fs.readFile(store.logFile, 'utf8')).length;
      await env.cp.stopApiServer();
      const during: HttpOutcome[] = [];
      for (let i = 0; i < 3; i++) during.push(await call(ctx.ledger, store.url, { headers: bearer(newcomer) }));
      await sleep(500);
      await env.cp.startApiServer();
      const recovery: HttpOutcome[] = [];
      await eventually(
        'a new caller let in after the restart',
        async () => {
          const res = await call(ctx.ledger, store.url, { headers: bearer(afterRestart) });
          recovery.push(res);
          return res.status === 200 ? true : undefined;
        },
        10_000,
        200,
      );
      await load.stop();
      console.log(
        `faults/api server stopped: load ${JSON.stringify(load.summary())}; new callers during the outage ` +
          `${JSON.stringify(during.map((o) => [o.status, Math.round(o.ms)]))}; after the restart ${JSON.stringify(recovery.map((o) => o.status))}`,
      );

      const bad = account(
        load.outcomes.map((o) => o.outcome),
        [...during, ...recovery],
      );
      expect(load.lost).toBe(0);
      expect(load.outcomes.filter((o) => o.outcome.status !== 200)).toEqual([]);
      for (const res of during) {
        expect(res.status).toBe(503);
        expect(answered(res) && res.headers['retry-after']).toBe('5');
      }
      // At once: refused connections answered them, not the review timeout (the times are printed above).
      const outageLog = (await fs.readFile(store.logFile, 'utf8')).slice(logBefore);
      expect(outageLog).toMatch(/TokenReview failed: .*ECONNREFUSED/);
      expect(outageLog).not.toContain('timed out after');
      expect(recovery.filter((o) => o.status !== 200 && o.status !== 503)).toEqual([]);
      expect(bad).toBe(0);
    });

    it('API server silent: reviews fail with 503 at the timeout while /healthz and cached callers are answered', async () => {
      const { env } = ctx;
      const slowStore = await env.startSecretStore({ kubeconfig: viaProxy });
      try {
        const warm = await env.mint(ACCOUNTS.api);
        const first = await call(ctx.ledger, slowStore.url, { headers: bearer(warm) });
        expect(answered(first) && first.status).toBe(200); // the proxy path works

        const fresh = await Promise.all([1, 2, 3, 4].map(() => env.mint(ACCOUNTS.api)));
        // Nothing from the API server until healed: a review can end only by the store's timeout, on any machine.
        proxy.freeze();
        const health: HttpOutcome[] = [];
        let reviewing = true;
        // Probes answered while the reviews hang: /healthz does not wait on them.
        let healthWhileReviewing = 0;
        const prober = (async () => {
          while (reviewing || health.length < 3) {
            const res = await call(ctx.ledger, `${slowStore.url}/healthz`);
            health.push(res);
            if (reviewing) healthWhileReviewing++;
            await sleep(50);
          }
        })();
        const [results, cachedMeanwhile] = await Promise.all([
          Promise.all(fresh.map((t) => call(ctx.ledger, slowStore.url, { headers: bearer(t) }))).finally(
            () => (reviewing = false),
          ),
          (async () => {
            await sleep(1000);
            return call(ctx.ledger, slowStore.url, { headers: bearer(warm) });
          })(),
        ]);
        await prober;
        proxy.heal();
        const recovered = await call(ctx.ledger, slowStore.url, { headers: bearer(await env.mint(ACCOUNTS.api)) });

        const slowest = Math.max(...health.map((h) => h.ms));
        console.log(
          `faults/api server slow: new callers ${JSON.stringify(results.map((o) => [o.status, Math.round(o.ms)]))}; ` +
            `${health.length} /healthz probes, ${healthWhileReviewing} while the reviews hung, slowest ` +
            `${slowest.toFixed(1)} ms; cached caller ${cachedMeanwhile.status} in ${Math.round(cachedMeanwhile.ms)} ms; ` +
            `after the delay ${recovered.status}`,
        );
        const bad = account([...health, cachedMeanwhile, recovered], results);
        for (const res of results) {
          expect(res.status).toBe(503);
          expect(answered(res) && res.headers['retry-after']).toBe('5');
          // Not before the timeout (a lower bound, from before the request: slowness only lengthens it).
          expect(res.ms).toBeGreaterThan(REVIEW_TIMEOUT_MS - 500);
        }
        expect(health.filter((h) => h.status !== 200)).toEqual([]);
        expect(healthWhileReviewing).toBeGreaterThan(0);
        // Answered with the API server silent: from the cache.
        expect(cachedMeanwhile.status).toBe(200);
        expect(recovered.status).toBe(200);
        expect(bad).toBe(0);
      } finally {
        proxy.heal();
        await slowStore.stop();
      }
    });

    it('token file rotated, deleted, truncated and half-written under load: outgoing calls keep working while a valid token exists', async () => {
      const { env, store } = ctx;
      const dir = join(env.runDir, 'chaos-tokens');
      const file = join(dir, 'secret-store-token');
      const { rotate } = await env.startProjector(dir, [
        { path: 'secret-store-token', serviceAccount: ACCOUNTS.api, audience: 'secret-store', pod: env.pods.api },
      ]);
      // The api re-reads its file every second here, so that it meets the damage (the default is 5 min).
      const chaosApi = await env.startApi(store.url, { tokenFile: file, env: { TOKEN_REFRESH_INTERVAL_MS: '1000' } });
      let app: INestApplication | undefined;
      try {
        const moduleRef = await Test.createTestingModule({
          imports: [
            K8sAuthModule.forRoot({ tokenSources: { store: { file, refreshIntervalMs: 1000 } }, metrics: false }),
          ],
        }).compile();
        app = moduleRef.createNestApplication({ logger: ctx.logger });
        await app.init();
        const client = axios.create({ baseURL: store.url, timeout: 10_000, validateStatus: () => true });
        attachServiceAccountToken(client, app.get(TokenSources).get('store'));

        const load = new Load({
          'api GET / (api process, token file re-read every second)': () => call(ctx.ledger, `${chaosApi.url}/`),
          'in-process TokenSources + axios': () => viaAxios(ctx, client),
        });
        const data = () => join(dir, '..data', 'secret-store-token');
        const current = async () => (await fs.readFile(data(), 'utf8')).trim();
        const [, , signature] = (await current()).split('.');
        // Damage that still reads as a token first: the readers are on their one-second cadence then.
        // A failed read makes a reader wait 10 s, so the in-process one is also told to read at once.
        const damage: [string, () => Promise<void>, number][] = [
          ['rotated', rotate, 400],
          [
            'half-written, cut in the signature',
            async () => fs.writeFile(data(), (await current()).slice(0, -signature.length / 2)),
            1500,
          ],
          ['rotated', rotate, 1200],
          ['cut by one character', async () => fs.writeFile(data(), (await current()).slice(0, -1)), 1500],
          ['rotated', rotate, 1200],
          ['half-written, cut in the payload', async () => fs.writeFile(data(), (await current()).slice(0, 300)), 1300],
          ['rotated', rotate, 400],
          ['truncated to 0 bytes', () => fs.truncate(data(), 0), 1300],
          ['rotated', rotate, 400],
          ['deleted', () => fs.rm(file), 1300],
          ['rotated', rotate, 400],
          ['overwritten with garbage', () => fs.writeFile(data(), 'not a token\n'), 1300],
        ];
        const source = app.get(TokenSources).get('store');
        const refreshFailures: string[] = [];
        for (const [what, act, wait] of damage) {
          await act();
          await source.refresh().catch((err: Error) => refreshFailures.push(`${what}: ${err.message}`));
          await sleep(wait);
        }
        await rotate();
        await sleep(1500);
        await load.stop();
        console.log(
          `faults/token file: ${damage.length + 1} changes to the file; load ${JSON.stringify(load.summary())}`,
        );
        const bad = account(load.outcomes.map((o) => o.outcome));
        expect(load.lost).toBe(0);
        expect(load.outcomes.filter((o) => o.outcome.status !== 200).length).toBe(0);
        expect(refreshFailures).toEqual([]);
        expect(bad).toBe(0);
      } finally {
        await app?.close();
        await chaosApi.stop();
      }
    });

    it(`silent partition between a local+watch store on default options and the API server: no deleted pod's token accepted more than ${PARTITION_BOUND_MS} ms after its DELETE, whether accepted before or never seen; after it heals, they stay refused and a live pod gets in`, async () => {
      const { env } = ctx;
      const partition = new ApiServerProxy({
        target: { host: '127.0.0.1', port: Number(new URL(env.cp.server).port) },
      });
      const via = await env.kubeconfigVia('secretStore', await partition.start());
      const store = await env.startSecretStore({ kubeconfig: via, env: { VERIFICATION: 'local+watch' } });
      const send = (token: string) => call(ctx.ledger, store.url, { headers: bearer(token) });
      const podToken = async (name: string) => {
        const pod = await createPod(env.cp.kubeConfig, ACCOUNTS.api, name);
        return { pod, token: await env.mint(ACCOUNTS.api, { boundObject: { kind: 'Pod', ...pod } }) };
      };
      const remove = (pod: { name: string }) => deletePod(env.cp.kubeConfig, ACCOUNTS.api.namespace, pod.name);
      try {
        // Until its watches hold their first lists, the store asks TokenReview: waited out.
        await env.servedFromWatches(send);
        const [control, cached, unseen, live] = [
          await podToken('api-partition-control'),
          await podToken('api-partition-cached'),
          await podToken('api-partition-unseen'),
          await podToken('api-partition-live'),
        ];

        // The control: the same deletion with no partition is refused from the watch's event.
        expect((await send(control.token)).status).toBe(200);
        const controlStarted = performance.now();
        await remove(control.pod);
        const controlMs = await eventually(
          "the control pod's token refused",
          async () => ((await send(control.token)).status === 403 ? performance.now() - controlStarted : undefined),
          30_000,
          50,
        );

        expect((await send(cached.token)).status).toBe(200);
        partition.freeze();
        await Promise.all([remove(cached.pod), remove(unseen.pod)]);
        const deletedAt = performance.now();
        const sent: { which: 'cached' | 'unseen'; afterMs: number; outcome: Promise<HttpOutcome> }[] = [];
        for (let round = 0; round < PARTITION_MS / PARTITION_SEND_EVERY_MS; round++) {
          for (const [which, token] of [
            ['cached', cached.token],
            ['unseen', unseen.token],
          ] as const) {
            sent.push({ which, afterMs: performance.now() - deletedAt, outcome: send(token) });
          }
          await sleep(PARTITION_SEND_EVERY_MS);
        }
        partition.heal();
        const answers = await Promise.all(sent.map(async (s) => ({ ...s, outcome: await s.outcome })));

        // Healed: the live pod gets in again (from the watches or TokenReview), the deleted pods' tokens stay out.
        const liveAgain = await eventually(
          'a live pod accepted after the partition healed',
          async () => ((await send(live.token)).status === 200 ? true : undefined),
          60_000,
          200,
        );
        const afterHeal = { cached: await send(cached.token), unseen: await send(unseen.token) };

        const latest = (which: string) =>
          Math.max(-1, ...answers.filter((a) => a.which === which && a.outcome.status === 200).map((a) => a.afterMs));
        const statuses: Record<string, number> = {};
        for (const a of answers) statuses[a.outcome.status || 'none'] = (statuses[a.outcome.status || 'none'] ?? 0) + 1;
        ctx.figures.partition = {
          cachedMs: latest('cached'),
          unseenMs: latest('unseen'),
          requests: answers.length,
          controlMs,
        };
        console.log(
          `faults/partition: control refused after ${Math.round(controlMs)} ms; during ${PARTITION_MS} ms of partition ` +
            `${JSON.stringify(statuses)}; deleted pods' tokens accepted until ${Math.round(latest('cached'))} ms ` +
            `(cached) and ${Math.round(latest('unseen'))} ms (never seen) after the DELETE; after healing: live ` +
            `${liveAgain ? 200 : 'refused'}, cached ${afterHeal.cached.status}, never seen ${afterHeal.unseen.status}`,
        );
        const bad = account(
          [],
          answers.map((a) => a.outcome),
        );
        expect(latest('cached')).toBeLessThanOrEqual(PARTITION_BOUND_MS);
        expect(latest('unseen')).toBeLessThanOrEqual(PARTITION_BOUND_MS);
        // Not vacuous: both tokens were sent, and answered, well after the bound.
        for (const which of ['cached', 'unseen']) {
          const late = answers.filter((a) => a.which === which && a.afterMs > PARTITION_BOUND_MS + 1000);
          expect(late.length).toBeGreaterThan(0);
          expect(late.filter((a) => a.outcome.status !== 503 && a.outcome.status !== 403)).toEqual([]);
        }
        expect(afterHeal.cached.status).toBe(403);
        expect(afterHeal.unseen.status).toBe(403);
        expect(bad).toBe(0);
      } finally {
        partition.heal();
        await store.stop();
        await partition.stop();
      }
    });

    it('each mode answers as the README says while the API server is down, slow or silently unreachable, and recovers after', async () => {
      const { env } = ctx;
      const modes = Object.keys(FAILURE_SEMANTICS) as Mode[];
      const targets = await Promise.all(
        modes.map(async (mode) => {
          const proxy = new ApiServerProxy({
            target: { host: '127.0.0.1', port: Number(new URL(env.cp.server).port) },
          });
          const via = await env.kubeconfigVia('secretStore', await proxy.start());
          // A token accepted before a fault stays cached until its cell is checked, however long the stores before it
          // took; local+watch keeps its default staleness bound, which its cells are about.
          const store = await env.startSecretStore({
            kubeconfig: via,
            env: { VERIFICATION: mode, ...LASTING_TOKEN_CACHE },
          });
          return { mode, proxy, store };
        }),
      );
      const send = (store: RunningService, token: string) => call(ctx.ledger, store.url, { headers: bearer(token) });
      const reviews = () => countApiServerRequests(env.cp.kubeConfig, 'tokenreviews');
      const faults: Record<
        Fault,
        { apply(p: ApiServerProxy): Promise<void> | void; heal(p: ApiServerProxy): Promise<void> | void }
      > = {
        down: { apply: (p) => p.down(), heal: (p) => p.up() },
        slow: { apply: (p) => void (p.delayMs = REVIEW_TIMEOUT_MS + 3_000), heal: (p) => void (p.delayMs = 0) },
        silent: { apply: (p) => p.freeze(), heal: (p) => p.heal() },
      };
      const seen: string[] = [];
      const wrong: string[] = [];
      try {
        for (const [fault, { apply, heal }] of Object.entries(faults) as [Fault, (typeof faults)[Fault]][]) {
          // Every store answers a new token before the fault, one store at a time: local+watch from its watches (no
          // TokenReview counted), since an answer of TokenReview's would be cached and stand through the fault.
          const cached: string[] = [];
          for (const { mode, store } of targets) {
            cached.push(
              await eventually(
                `${mode} accepting a new token${mode === 'local+watch' ? ' from its watches' : ''} before the fault ${fault}`,
                async () => {
                  const token = await env.mint(ACCOUNTS.api, { boundObject: { kind: 'Pod', ...env.pods.api } });
                  const before = await reviews();
                  if ((await send(store, token)).status !== 200) return undefined;
                  return mode !== 'local+watch' || (await reviews()) === before ? token : undefined;
                },
                60_000,
                200,
              ),
            );
          }
          const fresh = await Promise.all(targets.map(() => env.mint(ACCOUNTS.api)));
          await Promise.all(targets.map(({ proxy }) => apply(proxy)));
          await sleep(PAST_WATCH_BOUND_MS);
          const answers = await Promise.all(
            targets.map(async ({ store }, i) => {
              const [c, f] = await Promise.all([send(store, cached[i]), send(store, fresh[i])]);
              return { cached: c, fresh: f };
            }),
          );
          await Promise.all(targets.map(({ proxy }) => heal(proxy)));
          targets.forEach(({ mode }, i) => {
            const { cached: c, fresh: f } = answers[i];
            const expected = FAILURE_SEMANTICS[mode];
            seen.push(`${mode}/${fault}: cached ${c.status}, new ${f.status}`);
            if (c.status !== expected.cached || f.status !== expected.fresh) {
              wrong.push(
                `${mode}/${fault}: cached ${c.status} (expected ${expected.cached}), new ${f.status} (expected ${expected.fresh})`,
              );
            }
            for (const res of [c, f]) {
              if (res.status === 503 && !(answered(res) && res.headers['retry-after'] === '5')) {
                wrong.push(`${mode}/${fault}: a 503 without Retry-After`);
              }
            }
          });
          account(
            [],
            answers.flatMap((a) => [a.cached, a.fresh]),
          );
          // Recovered: a token none of them has seen is accepted again.
          await Promise.all(
            targets.map(async ({ mode, store }) => {
              const token = await env.mint(ACCOUNTS.api);
              await eventually(
                `${mode} accepting a new token after the fault ${fault} healed`,
                async () => ((await send(store, token)).status === 200 ? true : undefined),
                60_000,
                200,
              );
            }),
          );
        }
        ctx.figures.failureSemantics = { cells: seen.length, wrong: wrong.length };
        console.log(`faults/failure semantics: ${seen.join('; ')}`);
        expect(wrong).toEqual([]);
      } finally {
        for (const { proxy, store } of targets) {
          await proxy.up();
          proxy.heal();
          proxy.delayMs = 0;
          await store.stop();
          await proxy.stop();
        }
      }
    });

    it('SIGTERM to the secret store while reviews are in flight: they finish, new connections are refused, it exits by itself', async () => {
      const { env } = ctx;
      const store = await env.startSecretStore({ kubeconfig: viaProxy });
      const warm = await env.mint(ACCOUNTS.api);
      expect((await call(ctx.ledger, store.url, { headers: bearer(warm) })).status).toBe(200);
      const fresh = await Promise.all([1, 2, 3, 4, 5, 6].map(() => env.mint(ACCOUNTS.api)));
      const reviewsBefore = await countApiServerRequests(env.cp.kubeConfig, 'tokenreviews');

      proxy.delayMs = 1_500;
      proxy.resetPeak();
      const agent = new Agent({ keepAlive: true });
      try {
        const inFlight = [
          ...fresh.map((t) => call(ctx.ledger, store.url, { headers: bearer(t), agent })),
          call(ctx.ledger, store.url, { headers: bearer(warm), agent }),
        ];
        // Signalled once the store has a connection to the API server per new token: its reviews are under way.
        await eventually(
          'the reviews under way',
          async () => (proxy.peakConnections >= fresh.length ? true : undefined),
          EXIT_DEADLINE_MS,
          10,
        );
        const signalledAt = Date.now();
        process.kill(store.pid, 'SIGTERM');
        const answered = Promise.all(inFlight).then((all) => ({ results: all, answeredMs: Date.now() - signalledAt }));
        const { refused, exitMs } = await stoppedWell(store, signalledAt);
        const { results, answeredMs } = await answered;
        proxy.delayMs = 0;
        const reviews = (await countApiServerRequests(env.cp.kubeConfig, 'tokenreviews')) - reviewsBefore;
        console.log(
          `faults/SIGTERM secret-store: in flight ${JSON.stringify(results.map((o) => [o.status, Math.round(o.ms)]))}; ` +
            `new connections refused ${refused}; all answered ${answeredMs} ms after the signal, exited after ${exitMs} ms; TokenReviews for ${fresh.length} new tokens: ${reviews}`,
        );
        const bad = account(results);
        expect(results.map((o) => o.status)).toEqual(results.map(() => 200));
        expect(refused).toBe(true);
        // Exited by itself, before idle keep-alive connections (72 s) could have let it: they were closed.
        expect(exitMs).toBeLessThan(Infinity);
        // Shutdown must not tear down the reviews under way (each would be sent again).
        expect(reviews).toBe(fresh.length);
        expect(bad).toBe(0);
      } finally {
        proxy.delayMs = 0;
        agent.destroy();
        await store.stop();
      }
    });

    it('SIGTERM to the api while its calls to the secret store are in flight: they finish, new connections are refused, it exits by itself', async () => {
      const { env } = ctx;
      // A secret store that takes its time, so that the api's requests are in flight when the signal comes.
      let received = 0;
      const slow: Server = createServer((_req, res) => {
        received++;
        setTimeout(() => res.end('slow hello'), 1_500);
      });
      await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
      const caller = await env.startApi(`http://127.0.0.1:${(slow.address() as { port: number }).port}`);
      const agent = new Agent({ keepAlive: true });
      try {
        const inFlight = Array.from({ length: 8 }, () => call(ctx.ledger, `${caller.url}/`, { agent }));
        // Signalled once all 8 calls have reached the slow store: they are under way.
        await eventually('the calls under way', async () => (received >= 8 ? true : undefined), EXIT_DEADLINE_MS, 10);
        const signalledAt = Date.now();
        process.kill(caller.pid, 'SIGTERM');
        const answered = Promise.all(inFlight).then((all) => ({ results: all, answeredMs: Date.now() - signalledAt }));
        const { refused, exitMs } = await stoppedWell(caller, signalledAt);
        const { results, answeredMs } = await answered;
        console.log(
          `faults/SIGTERM api: in flight ${JSON.stringify(results.map((o) => [o.status, Math.round(o.ms)]))}; ` +
            `new connections refused ${refused}; all answered ${answeredMs} ms after the signal, exited after ${exitMs} ms`,
        );
        const bad = account(results);
        expect(results.map((o) => o.status)).toEqual(results.map(() => 200));
        expect(refused).toBe(true);
        // Exited by itself, before idle keep-alive connections (72 s) could have let it: they were closed.
        expect(exitMs).toBeLessThan(Infinity);
        expect(bad).toBe(0);
      } finally {
        agent.destroy();
        slow.closeAllConnections();
        slow.close();
        await caller.stop();
      }
    });
  });
}

/** After SIGTERM: are new connections refused (checked a few times), and how long until the process exits. */
async function stoppedWell(
  service: RunningService,
  signalledAt: number,
): Promise<{ refused: boolean; exitMs: number }> {
  let refused = true;
  for (let i = 0; i < 5; i++) {
    await sleep(100);
    if (await canConnect(service.port)) refused = false;
  }
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([
    service.process.whenExited().then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), EXIT_DEADLINE_MS))),
  ]);
  clearTimeout(timer);
  return { refused, exitMs: exited ? Date.now() - signalledAt : Infinity };
}

async function viaAxios(ctx: SuiteContext, client: AxiosInstance): Promise<HttpOutcome> {
  const started = performance.now();
  try {
    const res = await client.get<string>('/', { responseType: 'text' });
    ctx.ledger.record('body', 'axios GET /', String(res.data));
    return { status: res.status, headers: {}, body: String(res.data), ms: performance.now() - started };
  } catch (err) {
    return { status: 0, error: (err as Error).message, ms: performance.now() - started };
  }
}
