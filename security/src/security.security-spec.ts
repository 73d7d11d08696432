import { Logger } from '@nestjs/common';
import { promises as fs } from 'node:fs';
import { describeAccessBudget } from './access-budget';
import { describeAttacks } from './attacks';
import { describeCallerIsolation } from './caller-isolation';
import { describeFaults } from './faults';
import { describeFuzz } from './fuzz';
import { describeLogInjection } from './log-injection';
import { describeReviewBudget } from './review-budget';
import { describeSecrets } from './secrets';
import { Figures, type SuiteContext } from './support/context';
import { SecurityEnvironment } from './support/environment';
import { call } from './support/http';
import { CollectingLogger, SecretLedger } from './support/ledger';
import { summaryFile } from './support/summary-file';

/**
 * The security and reliability suite: the services of this repository on a real kube-apiserver and
 * etcd, attacked, faulted and fuzzed, then every log and answer searched for tokens. One control
 * plane for all eight areas, which run in this order. The review and access budgets run late because
 * they count the API server's TokenReviews while nothing else sends any; the secrets area runs last
 * because it reads everything the others produced. Each area adds its figures; the summary lines are printed
 * at the very end of the run (jest.global-teardown.ts). SECURITY_KEEP_RUN_DIR=1 keeps the logs.
 */
const ledger = new SecretLedger();
const ctx = {
  ledger,
  logger: new CollectingLogger(ledger),
  figures: new Figures(),
  registries: [],
} as unknown as SuiteContext;

// Nest's static logger, used by library code outside an app (token sources), goes to the ledger too.
Logger.overrideLogger(ctx.logger);

describe('security and reliability, on a real control plane', () => {
  beforeAll(async () => {
    ctx.env = await SecurityEnvironment.start(ledger);
    ctx.store = await ctx.env.startSecretStore();
    const ready = await call(ledger, `${ctx.store.url}/readyz`);
    expect(ready.status).toBe(200);
  }, 120_000);

  afterAll(async () => {
    await ctx.env?.stop();
    // SECURITY_KEEP_RUN_DIR=1 keeps the services' logs for a look after a failure.
    if (process.env['SECURITY_KEEP_RUN_DIR']) console.log(`logs kept in ${ctx.env?.logDir}`);
    else await ctx.env?.remove();
    const lines = ctx.figures.lines();
    if (lines.length > 0) await fs.writeFile(summaryFile(process.pid), lines.map((l) => `${l}\n`).join(''));
  }, 60_000);

  describeAttacks(ctx);
  describeCallerIsolation(ctx);
  describeFaults(ctx);
  describeFuzz(ctx);
  describeReviewBudget(ctx);
  describeAccessBudget(ctx);
  describeLogInjection(ctx);
  describeSecrets(ctx);
});
