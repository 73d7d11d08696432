import { ApiServerProxy } from '@k8s-auth/internal/testing';
import { countApiServerRequests } from '@k8s-auth/nestjs/testing';
import { settledCount, sleep, type SuiteContext } from './support/context';
import { ACCOUNTS, LASTING_TOKEN_CACHE, type RunningService } from './support/environment';
import { logCount, metricValue } from './support/evidence';
import { answered, call, type HttpOutcome } from './support/http';
import { sendBounded, unexpected5xx } from './support/load';

/**
 * The RBAC cache bound of the flood case's own store (`CACHE_MAX_ENTRIES`): the flood is sized from it, so the case
 * does not depend on how many requests a machine sends in some time.
 */
const CACHE_BOUND = 50;
const DENIED_NAMES = 4 * CACHE_BOUND;
/** The flood case store's token cache TTL: past it the allowed caller would need a TokenReview. */
const CACHE_TTL_MS = Number(LASTING_TOKEN_CACHE.CACHE_TTL_SECONDS) * 1000;
/** The library's default bound on SubjectAccessReviews in flight, which the stores here keep. */
const ACCESS_REVIEWS_IN_FLIGHT = 64;
/** Names asked for at once while the API server is slow: more than the bound on reviews in flight. */
const BURST = 4 * ACCESS_REVIEWS_IN_FLIGHT;
/** How slow the API server is made for the burst. */
const SLOW_API_SERVER_MS = 3_000;
/** A SubjectAccessReview that timed out, as the store logs it: the one cause of a 503 other than the bound. */
const ACCESS_REVIEW_TIMED_OUT = /SubjectAccessReview failed: .*timed out after/g;
/** A guard against a hang only: the runs below are sized by counts, not by time. */
const SEND_TIMEOUT_MS = 120_000;

/**
 * The access budget: what `@RequireAccess` (SubjectAccessReview) decisions cost, on the secret store's
 * `GET /secrets/:name`, which RBAC alone decides (api:api may read, data-store:data-store may not). Each case runs a
 * store of its own that reaches the API server through a proxy, so it can make the API server slow or unreachable for
 * that store alone.
 */
export function describeAccessBudget(ctx: SuiteContext): void {
  describe('access budget', () => {
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const statuses = (outcomes: HttpOutcome[]) => {
      const counts: Record<string, number> = {};
      for (const o of outcomes) counts[o.status || 'none'] = (counts[o.status || 'none'] ?? 0) + 1;
      return counts;
    };

    /** A store whose calls to the API server go through a proxy of its own. */
    async function storeBehindProxy(env: Record<string, string> = {}) {
      const proxy = new ApiServerProxy({
        target: { host: '127.0.0.1', port: Number(new URL(ctx.env.cp.server).port) },
      });
      const kubeconfig = await ctx.env.kubeconfigVia('secretStore', await proxy.start());
      let store: RunningService;
      try {
        store = await ctx.env.startSecretStore({ kubeconfig, env });
      } catch (err) {
        await proxy.stop();
        throw err;
      }
      return {
        proxy,
        store,
        stop: async () => {
          await store.stop();
          await proxy.stop();
        },
      };
    }

    it(
      `keeps an allowed decision through ${DENIED_NAMES} denied names (RBAC cache bound ${CACHE_BOUND}): ` +
        'the allowed caller gets 200 with the API server unreachable',
      async () => {
        const { env } = ctx;
        // The allowed caller's token stays cached to the end, however slow the flood: only eviction could cost a review.
        const { proxy, store, stop } = await storeBehindProxy({
          CACHE_MAX_ENTRIES: String(CACHE_BOUND),
          ...LASTING_TOKEN_CACHE,
        });
        try {
          const [allowed, denied] = [await env.mint(ACCOUNTS.api), await env.mint(ACCOUNTS.dataStore)];
          const secret = `${store.url}/secrets/db-password`;
          const before = await call(ctx.ledger, secret, { headers: bearer(allowed) });
          expect(answered(before) && before.status).toBe(200);
          const cachedAt = Date.now();

          // Distinct names, so each is a SubjectAccessReview of its own, denied and cached.
          const flood = await sendBounded(DENIED_NAMES, 8, SEND_TIMEOUT_MS, (i) =>
            call(ctx.ledger, `${store.url}/secrets/not-yours-${i}`, { headers: bearer(denied) }),
          );
          // A proxy that no longer listens: every new connection to the API server is refused.
          await proxy.stop();
          const after = await call(ctx.ledger, secret, { headers: bearer(allowed) });
          const sinceCached = Date.now() - cachedAt;
          // A name never asked for needs a review: proof that the API server is out of reach for this store.
          const uncached = await call(ctx.ledger, `${store.url}/secrets/never-asked`, { headers: bearer(allowed) });

          const deniedNames = flood.outcomes.filter((o) => o.status === 403).length;
          ctx.figures.access.flood = { deniedNames, bound: CACHE_BOUND, allowedStatus: after.status };
          console.log(
            `access budget/flood: ${flood.outcomes.length} names asked for by data-store, answers ` +
              `${JSON.stringify(statuses(flood.outcomes))}; API server unreachable: api:api ${after.status} on the ` +
              `name allowed before, ${uncached.status} on a new name`,
          );
          expect(statuses(flood.outcomes)).toEqual({ 403: DENIED_NAMES });
          expect(uncached.status).toBe(503);
          expect(answered(uncached) && uncached.headers['retry-after']).toBe('5');
          // Past the token cache TTL a TokenReview is due anyway, and the answer would say nothing about eviction.
          expect(sinceCached).toBeLessThan(CACHE_TTL_MS);
          expect(after.status).toBe(200);
        } finally {
          await stop();
        }
      },
    );

    it(
      `bounds the SubjectAccessReviews in flight: ${BURST} denied names at once on a slow API server get 503 with ` +
        "Retry-After at once beyond the bound, none allowed; a cached decision comes from the cache; a new caller's TokenReview is still made",
      async () => {
        const { env } = ctx;
        const { proxy, store, stop } = await storeBehindProxy();
        const tokenReviews = () =>
          settledCount(() => countApiServerRequests(env.cp.kubeConfig, 'tokenreviews'), 60_000);
        try {
          const [allowed, denied, newcomer] = [
            await env.mint(ACCOUNTS.api),
            await env.mint(ACCOUNTS.dataStore),
            await env.mint(ACCOUNTS.api),
          ];
          // Both tokens reviewed and cached, and api's decision on db-password: the burst needs no TokenReview.
          const allowedFirst = await call(ctx.ledger, `${store.url}/secrets/db-password`, { headers: bearer(allowed) });
          const deniedFirst = await call(ctx.ledger, `${store.url}/secrets/warm-up`, { headers: bearer(denied) });
          expect([allowedFirst.status, deniedFirst.status]).toEqual([200, 403]);

          const reviewsBefore = await tokenReviews();
          const hits = () =>
            metricValue(ctx.ledger, store.url, 'k8s_auth_access_cache_lookups_total', ['result', 'hit']);
          const [hitsBefore, timedOutBefore] = [await hits(), await logCount(store.logFile, ACCESS_REVIEW_TIMED_OUT)];
          proxy.resetPeak();
          proxy.delayMs = SLOW_API_SERVER_MS;
          const [burst, cachedMeanwhile, newcomerMeanwhile] = await Promise.all([
            sendBounded(BURST, BURST, SEND_TIMEOUT_MS, (i) =>
              call(ctx.ledger, `${store.url}/secrets/burst-${i}`, { headers: bearer(denied) }),
            ),
            (async () => {
              await sleep(500);
              return call(ctx.ledger, `${store.url}/secrets/db-password`, { headers: bearer(allowed) });
            })(),
            // GET /ping needs a TokenReview only (an allowlist, no RBAC): its own bound, not the burst's.
            (async () => {
              await sleep(500);
              return call(ctx.ledger, `${store.url}/ping`, { headers: bearer(newcomer) });
            })(),
          ]);
          proxy.delayMs = 0;
          const newcomerReviews = (await tokenReviews()) - reviewsBefore;
          const cachedHits = (await hits()) - hitsBefore;

          const answered503 = burst.outcomes.filter((o) => o.status === 503);
          // Each review that timed out is logged; every other 503 came from the bound, without waiting for a review.
          const timedOut = (await logCount(store.logFile, ACCESS_REVIEW_TIMED_OUT)) - timedOutBefore;
          const atOnce = Math.max(0, answered503.length - timedOut);
          const accepted = burst.outcomes.filter((o) => o.status >= 200 && o.status < 300).length;
          const bad = unexpected5xx([...burst.outcomes, newcomerMeanwhile]);
          ctx.figures.access.inFlight = { burst: BURST, atOnce, accepted, unexpected5xx: bad };
          const slowest = Math.round(Math.max(0, ...answered503.map((o) => o.ms)));
          console.log(
            `access budget/in flight: ${BURST} denied names at once, API server ${SLOW_API_SERVER_MS} ms slow: answers ` +
              `${JSON.stringify(statuses(burst.outcomes))}; ${atOnce} 503 from the bound, ${timedOut} reviews ` +
              `timed out (slowest 503 ${slowest} ms); cached decision meanwhile ${cachedMeanwhile.status} in ` +
              `${Math.round(cachedMeanwhile.ms)} ms (${cachedHits} cache hits); ` +
              `new caller ${newcomerMeanwhile.status} in ${Math.round(newcomerMeanwhile.ms)} ms, ${newcomerReviews} TokenReviews; ` +
              `at most ${proxy.peakConnections} connections to the API server at once`,
          );
          expect(accepted).toBe(0);
          expect(bad).toBe(0);
          // Reviewed and denied, or 503: beyond the bound at once, within it when the slow review timed out.
          expect(statuses(burst.outcomes.filter((o) => o.status !== 403 && o.status !== 503))).toEqual({});
          expect(answered503.filter((o) => !answered(o) || !o.headers['retry-after']).length).toBe(0);
          // Without a bound every name waits for its review.
          expect(atOnce).toBeGreaterThan(0);
          expect(answered(cachedMeanwhile) && cachedMeanwhile.status).toBe(200);
          // Answered from the cache (the burst's names are all new: their lookups miss), not after a slow review.
          expect(cachedHits).toBeGreaterThanOrEqual(1);
          // The SubjectAccessReviews held their own bound and their own connections, not the TokenReviews': the new
          // caller's review was made, on a connection beside the ones the bound's reviews held.
          expect(newcomerReviews).toBeGreaterThanOrEqual(1);
          expect(proxy.peakConnections).toBeGreaterThan(ACCESS_REVIEWS_IN_FLIGHT);
          // Accepted, or 503 when its review, on a new connection to the slow API server, timed out.
          expect([200, 503]).toContain(newcomerMeanwhile.status);
        } finally {
          proxy.delayMs = 0;
          await stop();
        }
      },
    );
  });
}
