import { call } from './support/http';
import type { SuiteContext } from './support/context';
import { ACCOUNTS } from './support/environment';

/**
 * Secrets: with every service stopped (so every log is complete, the control plane's included), no
 * token the suite held, and no 16-character piece of one, appears in any log line (the services' at
 * debug level, the in-process apps' Nest logger), any answer the services gave, or any metrics text.
 */
export function describeSecrets(ctx: SuiteContext): void {
  describe('secrets', () => {
    it('answers a token sent in the query string of an unknown route without echoing it', async () => {
      const token = await ctx.env.mint(ACCOUNTS.api);
      for (const target of [`${ctx.store.url}/no-such-route`, `${ctx.store.url}/secrets`]) {
        const res = await call(ctx.ledger, `${target}?access_token=${token}`);
        expect(res.status).toBe(404);
        expect('body' in res ? res.body : '').not.toContain(token.slice(-16));
      }
    });

    it('finds no token and no token fragment of 16+ characters in any log, answer or metrics output', async () => {
      for (const [i, registry] of ctx.registries.entries()) {
        ctx.ledger.record('metrics', `in-process registry ${i + 1}`, await registry.metrics());
      }
      await ctx.env.stop();
      const logs = await ctx.env.logs();
      const { leaks, lines } = ctx.ledger.scan(logs);
      ctx.figures.secrets = { leaks: leaks.length, lines: lines.log };
      console.log(
        `secrets: ${ctx.ledger.tokenCount} tokens held; scanned ${lines.log} log lines (${logs.length} log files ` +
          `and ${ctx.logger.lines} in-process lines), ${lines.body} lines of answers, ${lines.metrics} lines of metrics; ` +
          `${leaks.length} leaks`,
      );
      expect(ctx.ledger.tokenCount).toBeGreaterThan(20);
      expect(lines.log).toBeGreaterThan(100);
      expect(leaks.slice(0, 20)).toEqual([]);
    });
  });
}
