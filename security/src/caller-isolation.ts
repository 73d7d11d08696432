import { ACCOUNTS } from './support/environment';
import { answered, call, type HttpOutcome } from './support/http';
import type { SuiteContext } from './support/context';
import { handlerCalls, type MutationReport, startTargetApp, type TargetApp } from './support/target-app';

/** Long enough that every request of a case after the first finds the first one's cached review. */
const CACHE_TTL_MS = 60_000;
const NEGATIVE_CACHE_TTL_MS = 5_000;

type HandlerName = keyof typeof handlerCalls;

interface Step {
  what: string;
  path: string;
  token: string;
  expect: 200 | 403;
  /** The handler that runs when the request gets in. */
  handler: HandlerName;
}

/**
 * Caller isolation: what one request leaves behind in the guard (the identity it handed to the
 * handler, the policy it read for a route) must not decide another request. Each case runs on a
 * fresh in-process target app, so that no earlier case has cached a review or a policy.
 */
export function describeCallerIsolation(ctx: SuiteContext): void {
  describe('caller isolation', () => {
    let tokens: { api: string; dataStoreForSecretStore: string; dataStoreForDataStore: string };
    const outcomes: { case: string; what: string; status: number; expected: number }[] = [];

    const startTarget = async (): Promise<TargetApp> => {
      const target = await startTargetApp({
        kubeconfig: ctx.env.kubeconfigs.secretStore,
        logger: ctx.logger,
        cacheTtlMs: CACHE_TTL_MS,
        negativeCacheTtlMs: NEGATIVE_CACHE_TTL_MS,
      });
      ctx.registries.push(target.metrics);
      return target;
    };

    /**
     * Sends one step; a step owed a 403 is an attack in the suite's figures, accepted if it got a
     * status below 400 or its handler ran. Returns what differs from the step's expectation.
     */
    const run = async (target: TargetApp, name: string, step: Step): Promise<{ res: HttpOutcome; wrong?: string }> => {
      const before = handlerCalls[step.handler];
      const res = await call(ctx.ledger, `${target.url}${step.path}`, {
        headers: { authorization: `Bearer ${step.token}` },
      });
      const reached = handlerCalls[step.handler] !== before;
      if (step.expect === 403) {
        ctx.figures.attacks.tried++;
        if (reached || (answered(res) && res.status < 400)) ctx.figures.attacks.accepted++;
      }
      outcomes.push({ case: name, what: step.what, status: res.status, expected: step.expect });
      const ok = res.status === step.expect && reached === (step.expect === 200);
      return { res, wrong: ok ? undefined : `${step.what}: ${res.status}${reached ? ', handler ran' : ''}` };
    };

    beforeAll(async () => {
      tokens = {
        api: await ctx.env.mint(ACCOUNTS.api),
        dataStoreForSecretStore: await ctx.env.mint(ACCOUNTS.dataStore),
        dataStoreForDataStore: await ctx.env.mint(ACCOUNTS.dataStore, { audiences: ['data-store'] }),
      };
    });

    afterAll(() => {
      console.log(
        `caller isolation: ${outcomes.length} requests; ` +
          JSON.stringify(outcomes.map((o) => `${o.case}/${o.what}: ${o.status} (owed ${o.expected})`)),
      );
    });

    it('keeps the identity a handler was given from changing: a later request with the token is decided and identified as before', async () => {
      const target = await startTarget();
      const name = 'mutated @Caller()';
      try {
        const first = await run(target, name, {
          what: 'api:api mutates its identity',
          path: '/caller/mutate',
          token: tokens.api,
          expect: 200,
          handler: 'mutate',
        });
        expect(first.wrong).toBeUndefined();
        const report = JSON.parse(answered(first.res) ? first.res.body : '{}') as MutationReport;
        const wrong: string[] = [];
        const whoami = await run(target, name, {
          what: 'api:api asks who it is',
          path: '/caller/whoami',
          token: tokens.api,
          expect: 200,
          handler: 'whoami',
        });
        if (whoami.wrong) wrong.push(whoami.wrong);
        const seen = answered(whoami.res) && whoami.res.status === 200 ? JSON.parse(whoami.res.body) : undefined;
        for (const step of [
          {
            what: 'api:api on a route for data-store:data-store only',
            path: '/data-store-only',
            expect: 403,
            handler: 'dataStoreOnly',
          },
          { what: 'api:api on its own route', path: '/guarded', expect: 200, handler: 'guarded' },
        ] as const) {
          const { wrong: w } = await run(target, name, { ...step, token: tokens.api });
          if (w) wrong.push(w);
        }
        console.log(`caller isolation/mutated @Caller(): the handler's attempts ${JSON.stringify(report.attempts)}`);

        // The decisions first: a rewritten identity that opens another caller's route is the finding.
        expect(wrong).toEqual([]);
        expect(seen).toEqual(report.before);
        // Immutable, not merely copied per request: the handler's own attempts change nothing.
        expect(report.after).toEqual(report.before);
      } finally {
        await target.close();
      }
    });

    it.each([
      ['the api controller first', 'api' as const],
      ['the data-store controller first', 'dataStore' as const],
    ])('applies each controller its own allowlist and audience on an inherited handler, %s', async (order, first) => {
      const target = await startTarget();
      const name = `inherited handler, ${order}`;
      const forApi: Step[] = [
        {
          what: 'api:api on the api controller',
          path: '/inherited-api/x',
          token: tokens.api,
          expect: 200,
          handler: 'inherited',
        },
        {
          what: 'data-store:data-store (audience data-store) on the api controller',
          path: '/inherited-api/x',
          token: tokens.dataStoreForDataStore,
          expect: 403,
          handler: 'inherited',
        },
        {
          what: 'data-store:data-store (audience secret-store) on the api controller',
          path: '/inherited-api/x',
          token: tokens.dataStoreForSecretStore,
          expect: 403,
          handler: 'inherited',
        },
      ];
      const forDataStore: Step[] = [
        {
          what: 'data-store:data-store on the data-store controller',
          path: '/inherited-data-store/x',
          token: tokens.dataStoreForDataStore,
          expect: 200,
          handler: 'inherited',
        },
        {
          what: 'api:api on the data-store controller',
          path: '/inherited-data-store/x',
          token: tokens.api,
          expect: 403,
          handler: 'inherited',
        },
        {
          what: 'data-store:data-store (audience secret-store) on the data-store controller',
          path: '/inherited-data-store/x',
          token: tokens.dataStoreForSecretStore,
          expect: 403,
          handler: 'inherited',
        },
      ];
      // The first controller's own caller comes first: its request is the one that reads a policy.
      const [own, other] = first === 'api' ? [forApi, forDataStore] : [forDataStore, forApi];
      const steps = [own[0], other[0], other[1], other[2], own[1], own[2]];
      const wrong: string[] = [];
      const controllers: string[] = [];
      try {
        for (const step of steps) {
          const { res, wrong: w } = await run(target, name, step);
          if (w) wrong.push(w);
          if (answered(res) && res.status === 200) controllers.push(JSON.parse(res.body).controller);
        }
      } finally {
        await target.close();
      }
      expect(wrong).toEqual([]);
      expect(controllers).toEqual(
        first === 'api' ? ['InheritedForApi', 'InheritedForDataStore'] : ['InheritedForDataStore', 'InheritedForApi'],
      );
    });
  });
}
