import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { Agent } from 'node:http';
import { ApiServerProxy } from '@k8s-auth/internal/testing';
import { countApiServerRequests } from '@k8s-auth/nestjs/testing';
import { settledCount, sleep, type SuiteContext } from './support/context';
import { ACCOUNTS, LASTING_TOKEN_CACHE, type RunningService } from './support/environment';
import { decodeJwt, nonCanonicalSpelling, retimedClaims, signRs256, withEditedPayload } from './support/forge';
import { logCount, metricValue } from './support/evidence';
import { answered, call, type HttpOutcome } from './support/http';
import { Load, sendBounded, unexpected5xx } from './support/load';

const FORGERIES = 20_000;
const FLOOD_CONCURRENCY = 48;
/** The flood stops sending after this long, whatever it has sent. */
const FLOOD_BUDGET_MS = 40_000;
/** The eviction case store's review cache TTL. */
const EVICTION_CACHE_TTL_MS = Number(LASTING_TOKEN_CACHE.CACHE_TTL_SECONDS) * 1000;
/**
 * The token cache bound of the eviction case's own store (`CACHE_MAX_ENTRIES`): the forgeries it sends are sized from
 * it, so that more refusals than the bound are cached however fast the machine is.
 */
const EVICTION_CACHE_ENTRIES = 100;
const EVICTION_FORGERIES = 4 * EVICTION_CACHE_ENTRIES;
/** A guard against a hang only: the eviction case is sized by counts, not by time. */
const SEND_TIMEOUT_MS = 120_000;
const EXPIRED_FORGERIES = 200;
const MALFORMED = 100;
/** New tokens sent at once while the API server is slow: more than any sensible bound on reviews in flight. */
const BURST = 256;
/** How slow the API server is made for the burst. */
const SLOW_API_SERVER_MS = 3_000;
/** A TokenReview that timed out, as a store logs it: the one cause of a 503 other than the bound. */
const REVIEW_TIMED_OUT = /TokenReview failed: .*timed out after/g;
/** A sample of the forgeries goes into the ledger: all 20 000 would grow the secrets scan's fragment set past a gigabyte. */
const LEDGER_SAMPLE_EVERY = 1_000;

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');

/**
 * Tokens of a JWT's shape (three base64url segments) that are not a JWT: segments that do not decode
 * to JSON, claims or a header that are not a JSON object, a segment whose length no encoder produces.
 */
function notAJwt(i: number, header: string, payload: string): string {
  const random = (n: number) => randomBytes(n).toString('base64url');
  const signature = random(256);
  switch (i % 6) {
    case 0:
      return `${random(30)}.${random(300)}.${signature}`;
    case 1:
      return `${header}.${b64(`not json ${randomUUID()}`)}.${signature}`;
    case 2:
      return `${header}.${b64(JSON.stringify([randomUUID(), 'exp', 4102444800]))}.${signature}`;
    case 3:
      return `${b64(JSON.stringify(randomUUID()))}.${payload}.${signature}`;
    case 4:
      // A length that leaves 1 over 4: six bits, not a byte; lenient decoders drop them.
      return `${header}.${payload}${'A'.repeat((5 - (payload.length % 4)) % 4 || 4)}.${signature}`;
    default:
      return `${b64('{"alg":"RS256","kid":')}.${payload}.${signature}`;
  }
}

/**
 * The review budget: what tokens cost the API server. Refusals that need nobody's opinion (not a
 * JWT, expired, a non-canonical spelling) cost no TokenReview at all, and a flood of well-formed
 * forgeries neither evicts an accepted caller's cached review nor slows it. TokenReviews are counted
 * by the API server itself (its `apiserver_request_total` for `tokenreviews`), on a secret store of
 * this area's own whose cache no other area has touched.
 */
export function describeReviewBudget(ctx: SuiteContext): void {
  describe('review budget', () => {
    let store: RunningService;
    let template: { header: Record<string, unknown>; payload: Record<string, unknown> };
    let unknownKey: ReturnType<typeof generateKeyPairSync>['privateKey'];
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const reviews = () => countApiServerRequests(ctx.env.cp.kubeConfig, 'tokenreviews');
    const settledReviews = () => settledCount(reviews, 60_000);
    const refused = (o: HttpOutcome) => o.status === 401 || o.status === 403;
    const statuses = (outcomes: HttpOutcome[]) => {
      const counts: Record<string, number> = {};
      for (const o of outcomes) counts[o.status || 'none'] = (counts[o.status || 'none'] ?? 0) + 1;
      return counts;
    };

    beforeAll(async () => {
      // The flood's busy caller stays cached to its end, however slow the machine: only eviction could cost a review.
      store = await ctx.env.startSecretStore({ env: LASTING_TOKEN_CACHE });
      const minted = decodeJwt(await ctx.env.mint(ACCOUNTS.api));
      template = { header: minted.header, payload: minted.payload };
      unknownKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    });

    afterAll(() => store?.stop());

    it(`refuses ${MALFORMED} tokens of a JWT's shape that are not JWTs, without a TokenReview`, async () => {
      const header = b64(JSON.stringify(template.header));
      const payload = b64(JSON.stringify(template.payload));
      const tokens = Array.from({ length: MALFORMED }, (_, i) => notAJwt(i, header, payload));
      tokens.forEach((t) => ctx.ledger.addToken(t));
      const before = await settledReviews();
      const { outcomes } = await sendBounded(tokens.length, 8, 30_000, (i) =>
        call(ctx.ledger, store.url, { headers: bearer(tokens[i]) }),
      );
      const spent = (await settledReviews()) - before;
      ctx.figures.reviews.malformed = { tokens: tokens.length, reviews: spent };
      console.log(
        `review budget/not JWTs: ${tokens.length} sent, answers ${JSON.stringify(statuses(outcomes))}; ${spent} TokenReviews`,
      );
      expect(statuses(outcomes.filter((o) => !refused(o)))).toEqual({});
      expect(spent).toBe(0);
    });

    it(`refuses ${EXPIRED_FORGERIES} forgeries whose exp passed an hour ago, without a TokenReview`, async () => {
      const now = Math.floor(Date.now() / 1000);
      // Signed with a key the API server does not know: refused by anyone who looks further than `exp`.
      const tokens = Array.from({ length: EXPIRED_FORGERIES }, () =>
        signRs256(unknownKey, template.header, retimedClaims(template.payload, now - 4200, now - 3600)),
      );
      tokens.forEach((t) => ctx.ledger.addToken(t));
      const before = await settledReviews();
      const { outcomes } = await sendBounded(tokens.length, 8, 30_000, (i) =>
        call(ctx.ledger, store.url, { headers: bearer(tokens[i]) }),
      );
      const spent = (await settledReviews()) - before;
      ctx.figures.reviews.expired = { tokens: tokens.length, reviews: spent };
      console.log(
        `review budget/expired: ${tokens.length} sent, answers ${JSON.stringify(statuses(outcomes))}; ${spent} TokenReviews`,
      );
      expect(statuses(outcomes.filter((o) => !refused(o)))).toEqual({});
      expect(spent).toBe(0);
    });

    it('refuses a non-canonical base64url spelling of a genuine, accepted token, without a TokenReview', async () => {
      const genuine = await ctx.env.mint(ACCOUNTS.api);
      const canonical = await call(ctx.ledger, store.url, { headers: bearer(genuine) });
      expect(answered(canonical) && canonical.status).toBe(200);
      const spelled = nonCanonicalSpelling(genuine);
      if (!spelled) throw new Error('the minted token has no segment with unused bits');
      ctx.ledger.addToken(spelled);

      const before = await settledReviews();
      const res = await call(ctx.ledger, store.url, { headers: bearer(spelled) });
      const spent = (await settledReviews()) - before;
      ctx.figures.attacks.tried++;
      if (!answered(res) || res.status < 400) ctx.figures.attacks.accepted++;
      ctx.figures.reviews.nonCanonical = { reviews: spent };
      console.log(`review budget/non-canonical spelling: answered ${res.status}; ${spent} TokenReviews`);
      expect(refused(res) ? 'refused' : res.status).toBe('refused');
      expect(spent).toBe(0);
    });

    /** A forgery signed by the unknown key over fresh claims, and a function making more of it with new `jti`s. */
    function forger() {
      // One signature over the template, kept on every forgery with fresh claims: without the key no verifier tells it
      // from a signature over those claims.
      const now = Math.floor(Date.now() / 1000);
      const signed = signRs256(unknownKey, template.header, retimedClaims(template.payload, now - 60, now + 540));
      return (i: number) => {
        const token = withEditedPayload(signed, (claims) => {
          claims['jti'] = randomUUID();
        });
        if (i % LEDGER_SAMPLE_EVERY === 0) ctx.ledger.addToken(token);
        return token;
      };
    }

    it(
      `floods up to ${FORGERIES} forgeries signed with an unknown key in ${FLOOD_BUDGET_MS / 1000} s: none accepted, ` +
        'no 5xx but 503 with Retry-After, a busy cached caller keeps 200',
      async () => {
        const busyToken = await ctx.env.mint(ACCOUNTS.api);
        const first = await call(ctx.ledger, store.url, { headers: bearer(busyToken) });
        expect(answered(first) && first.status).toBe(200);
        const forge = forger();
        const handled = async () =>
          ((await fs.readFile(store.logFile, 'utf8')).match(/authenticated system:serviceaccount:/g) ?? []).length;
        const handledBefore = await handled();
        const reviewsBefore = await settledReviews();

        const busy = new Load({
          'busy cached caller': () => call(ctx.ledger, store.url, { headers: bearer(busyToken) }),
        });
        const agent = new Agent({ keepAlive: true, maxSockets: FLOOD_CONCURRENCY });
        let flood;
        try {
          flood = await sendBounded(FORGERIES, FLOOD_CONCURRENCY, FLOOD_BUDGET_MS, (i) =>
            call(ctx.ledger, store.url, { headers: bearer(forge(i)), agent }),
          );
        } finally {
          await busy.stop();
          agent.destroy();
        }
        const spent = (await settledReviews()) - reviewsBefore;
        await sleep(300);
        const busyOutcomes = busy.outcomes.map((o) => o.outcome);
        const reached = (await handled()) - handledBefore - busyOutcomes.filter((o) => o.status === 200).length;

        const accepted = flood.outcomes.filter((o) => o.status >= 200 && o.status < 300).length + Math.max(reached, 0);
        const answered503 = flood.outcomes.filter((o) => o.status === 503);
        const bad = unexpected5xx(flood.outcomes);
        ctx.figures.reviews.flood = {
          forgeries: flood.outcomes.length,
          accepted,
          unexpected5xx: bad,
          answered503: answered503.length,
        };
        const ms = busyOutcomes.map((o) => o.ms).sort((a, b) => a - b);
        const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0);
        console.log(
          `review budget/flood: ${flood.outcomes.length} of ${FORGERIES} forgeries sent in ${flood.elapsedMs} ms ` +
            `(${FLOOD_CONCURRENCY} at a time), answers ${JSON.stringify(statuses(flood.outcomes))}, ${spent} TokenReviews; ` +
            `busy cached caller ${JSON.stringify(busy.summary())}, ms p50 ${at(0.5)} p99 ${at(0.99)} max ${at(1)}`,
        );

        const wrong = flood.outcomes.filter((o) => !refused(o) && o.status !== 503);
        expect(accepted).toBe(0);
        expect(bad).toBe(0);
        expect(statuses(wrong)).toEqual({});
        // 503 with the time to come back. Whether at once (the bound) is proven on a slow API server below; here the
        // times are printed: on a busy machine a review may time out, and its 503 is as right.
        expect(answered503.filter((o) => !answered(o) || !o.headers['retry-after']).length).toBe(0);
        expect(busy.lost).toBe(0);
        expect(statuses(busyOutcomes.filter((o) => o.status !== 200))).toEqual({});
      },
      FLOOD_BUDGET_MS + 60_000,
    );

    it(`a caller cached before ${EVICTION_FORGERIES} refused forgeries, more than its store's cache bound (${EVICTION_CACHE_ENTRIES}), needs no TokenReview after them`, async () => {
      const { env } = ctx;
      // The caller's token stays cached to the end, however slow the forgeries: only eviction could cost a review.
      const small = await env.startSecretStore({
        env: { CACHE_MAX_ENTRIES: String(EVICTION_CACHE_ENTRIES), ...LASTING_TOKEN_CACHE },
      });
      try {
        const quiet = await env.mint(ACCOUNTS.api);
        const first = await call(ctx.ledger, small.url, { headers: bearer(quiet) });
        expect(answered(first) && first.status).toBe(200);
        const cachedAt = Date.now();

        const forge = forger();
        const reviewsBefore = await settledReviews();
        // Fewer at a time than the bound on reviews in flight: every forgery is reviewed, and its refusal cached.
        const flood = await sendBounded(EVICTION_FORGERIES, 8, SEND_TIMEOUT_MS, (i) =>
          call(ctx.ledger, small.url, { headers: bearer(forge(i)) }),
        );
        const before = await settledReviews();
        const res = await call(ctx.ledger, small.url, { headers: bearer(quiet) });
        const sinceCached = Date.now() - cachedAt;
        const spent = (await settledReviews()) - before;
        const refusedForgeries = flood.outcomes.filter(refused).length;
        ctx.figures.reviews.cachedCaller = {
          forgeries: refusedForgeries,
          bound: EVICTION_CACHE_ENTRIES,
          reviews: spent,
        };
        console.log(
          `review budget/cached caller: ${EVICTION_FORGERIES} forgeries, answers ${JSON.stringify(statuses(flood.outcomes))}, ` +
            `${before - reviewsBefore} TokenReviews; cache bound ${EVICTION_CACHE_ENTRIES}; the caller cached before ` +
            `${res.status} ${Math.round(sinceCached / 1000)} s after it was cached, ${spent} TokenReviews`,
        );
        expect(refusedForgeries).toBe(EVICTION_FORGERIES);
        // Reviewed, so cached as refusals: more than the bound, which in one cache with acceptances would evict the caller.
        expect(before - reviewsBefore).toBeGreaterThan(EVICTION_CACHE_ENTRIES);
        expect(answered(res) && res.status).toBe(200);
        // Past the cache TTL a review is due anyway, and the count would say nothing about eviction.
        expect(sinceCached).toBeLessThan(EVICTION_CACHE_TTL_MS);
        expect(spent).toBe(0);
      } finally {
        await small.stop();
      }
    });

    it(`bounds the TokenReviews in flight: ${BURST} new forgeries at once on a slow API server get 503 with Retry-After at once beyond the bound, a cached caller is answered from the cache`, async () => {
      const { env } = ctx;
      const proxy = new ApiServerProxy({ target: { host: '127.0.0.1', port: Number(new URL(env.cp.server).port) } });
      const slowStore = await env.startSecretStore({
        kubeconfig: await env.kubeconfigVia('secretStore', await proxy.start()),
      });
      try {
        const cached = await env.mint(ACCOUNTS.api);
        const first = await call(ctx.ledger, slowStore.url, { headers: bearer(cached) });
        expect(answered(first) && first.status).toBe(200);

        const now = Math.floor(Date.now() / 1000);
        const signed = signRs256(unknownKey, template.header, retimedClaims(template.payload, now - 60, now + 540));
        const tokens = Array.from({ length: BURST }, () =>
          withEditedPayload(signed, (claims) => {
            claims['jti'] = randomUUID();
          }),
        );
        ctx.ledger.addToken(tokens[0]);
        const hits = () =>
          metricValue(ctx.ledger, slowStore.url, 'k8s_auth_review_cache_lookups_total', ['result', 'hit']);
        const [hitsBefore, timedOutBefore] = [await hits(), await logCount(slowStore.logFile, REVIEW_TIMED_OUT)];
        proxy.delayMs = SLOW_API_SERVER_MS;
        const [burst, cachedMeanwhile] = await Promise.all([
          sendBounded(BURST, BURST, 30_000, (i) => call(ctx.ledger, slowStore.url, { headers: bearer(tokens[i]) })),
          (async () => {
            await sleep(500);
            return call(ctx.ledger, slowStore.url, { headers: bearer(cached) });
          })(),
        ]);
        proxy.delayMs = 0;
        const cachedHits = (await hits()) - hitsBefore;

        const answered503 = burst.outcomes.filter((o) => o.status === 503);
        // The rest waited for a review: refused, or 503 at the review timeout (new connections pay the delay twice),
        // which the store logs; every other 503 came from the bound, without waiting for a review.
        const timedOut = (await logCount(slowStore.logFile, REVIEW_TIMED_OUT)) - timedOutBefore;
        const atOnce = Math.max(0, answered503.length - timedOut);
        const waited = burst.outcomes.filter((o) => o.status !== 503).length + timedOut;
        const accepted = burst.outcomes.filter((o) => o.status >= 200 && o.status < 300).length;
        const bad = unexpected5xx(burst.outcomes);
        ctx.figures.reviews.inFlight = { burst: BURST, atOnce, accepted, unexpected5xx: bad };
        const slowest = Math.round(Math.max(0, ...answered503.map((o) => o.ms)));
        console.log(
          `review budget/in flight: ${BURST} new forgeries at once, API server ${SLOW_API_SERVER_MS} ms slow: answers ` +
            `${JSON.stringify(statuses(burst.outcomes))}; ${atOnce} 503 from the bound (slowest 503 ` +
            `${slowest} ms), ${waited} waited for a review (${timedOut} timed out); cached caller meanwhile ` +
            `${cachedMeanwhile.status} in ${Math.round(cachedMeanwhile.ms)} ms (${cachedHits} cache hits)`,
        );
        expect(accepted).toBe(0);
        expect(bad).toBe(0);
        expect(statuses(burst.outcomes.filter((o) => !refused(o) && o.status !== 503))).toEqual({});
        expect(answered503.filter((o) => !answered(o) || !o.headers['retry-after']).length).toBe(0);
        // Beyond the bound nothing waits: without a bound every new token waits for its review.
        expect(atOnce).toBeGreaterThan(0);
        expect(answered(cachedMeanwhile) && cachedMeanwhile.status).toBe(200);
        // Answered from the cache (the forgeries are all new: their lookups miss), not after a slow review.
        expect(cachedHits).toBeGreaterThanOrEqual(1);
      } finally {
        proxy.delayMs = 0;
        await slowStore.stop();
        await proxy.stop();
      }
    });
  });
}
