import { createPrivateKey, type KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { TOKEN_VERIFICATIONS } from '@k8s-auth/nestjs';
import { type SuiteContext } from './support/context';
import { ACCOUNTS, type RunningService } from './support/environment';
import { decodeJwt, retimedClaims, signRs256, withHeader } from './support/forge';
import { answered, call, rawCall, type RawRequest } from './support/http';

/** A pid no process can have (Linux's limit is 2^22): a line that starts with it is one a request wrote. */
const FORGED_PID = 4242424;
const forgedLine = (tag: string) =>
  `[Nest] ${FORGED_PID}  - 01/01/2026, 12:00:00 AM     LOG [ServiceAccountGuard] allowed ` +
  `system:serviceaccount:kube-system:forged-${tag}`;

/** Values that would forge, hide or reorder log lines if written as given. */
const HOSTILE: Record<string, string> = {
  'CR LF': `x\r\n${forgedLine('crlf')}`,
  LF: `x\n${forgedLine('lf')}`,
  CR: `x\r${forgedLine('cr')}`,
  ANSI: `\u001b[31mred\u001b[0m\u001b[2K\u001b[1G${forgedLine('ansi')}`,
  'U+2028': `x\u2028${forgedLine('line-separator')}`,
  C1: `x\u0085${forgedLine('nel')}\u009b2J`,
  bidi: `\u202e${forgedLine('bidi')}\u202c`,
  '10 000 characters': `${'A'.repeat(10_000)}\r\n${forgedLine('long')}`,
};

/** A log line longer than this holds a value that was not cut short. */
const LONGEST_LINE = 2_000;
/** Characters that end, overwrite or reorder a line, or steer a terminal, when written raw (tab aside). */
const RAW_CONTROL = /[\p{Cc}\p{Zl}\p{Zp}\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
const hasRawControl = (line: string) => RAW_CONTROL.test(line.replaceAll('\t', ' '));

interface Place {
  name: string;
  request(value: string): RawRequest;
}

/**
 * Log injection: hostile values (CR, LF, ANSI escapes, C1 controls, U+2028, bidi overrides, 10 000 characters) in
 * every place a request or a token can carry one to the services' logs: the token header (`alg`, `kid`, `typ`), the
 * claims (`sub`, the `kubernetes.io` names), the token headers themselves and a route parameter, sent to a secret
 * store in each verification mode at debug level. Every line of its log must then be a line Nest wrote for that
 * process, with no raw control character and no value left uncut.
 */
export function describeLogInjection(ctx: SuiteContext): void {
  describe('log injection', () => {
    let places: Place[];
    let genuine: string;

    beforeAll(async () => {
      const { env } = ctx;
      genuine = await env.mint(ACCOUNTS.api);
      const minted = decodeJwt(genuine);
      const clusterKey: KeyObject = createPrivateKey(env.cp.serviceAccountSigningKey ?? '');
      const now = Math.floor(Date.now() / 1000);
      const claims = () => retimedClaims(minted.payload, now - 60, now + 540);
      /** Signed with the cluster key: every check before the one the value meets passes. */
      const signed = (payload: Record<string, unknown>, header: Record<string, unknown> = {}) => {
        const token = signRs256(clusterKey, { kid: minted.header['kid'], ...header }, payload);
        ctx.ledger.addToken(token);
        return token;
      };
      const bearer = (token: string): RawRequest => ({ path: '/', headers: [['Authorization', `Bearer ${token}`]] });
      /** The claims of the genuine token with its `kubernetes.io` names edited, `sub` to match, signed. */
      const withNames = (edit: (names: Record<string, unknown>, value: string) => void) => (value: string) => {
        const names = structuredClone(minted.payload['kubernetes.io']) as Record<string, unknown>;
        edit(names, value);
        const account = (names['serviceaccount'] as { name?: unknown }).name;
        const sub = `system:serviceaccount:${String(names['namespace'])}:${String(account)}`;
        return bearer(signed({ ...claims(), 'kubernetes.io': names, sub }));
      };
      const uid = (n: number) => `5f0c6f0e-0000-4000-8000-00000000000${n}`;
      places = [
        // An `alg` no signer makes: the header is replaced after signing, as a forger would.
        { name: 'alg', request: (v) => bearer(withHeader(signed(claims()), { alg: v, kid: minted.header['kid'] })) },
        { name: 'kid', request: (v) => bearer(signed(claims(), { kid: v })) },
        { name: 'typ', request: (v) => bearer(signed(claims(), { typ: v })) },
        { name: 'sub', request: (v) => bearer(signed({ ...claims(), sub: v })) },
        { name: 'kubernetes.io namespace', request: withNames((names, v) => (names['namespace'] = v)) },
        {
          name: 'kubernetes.io serviceaccount name',
          request: withNames(
            (names, v) => (names['serviceaccount'] = { ...(names['serviceaccount'] as object), name: v }),
          ),
        },
        { name: 'kubernetes.io pod name', request: withNames((names, v) => (names['pod'] = { name: v, uid: uid(1) })) },
        {
          name: 'kubernetes.io node name',
          request: withNames((names, v) => (names['node'] = { name: v, uid: uid(2) })),
        },
        { name: 'Authorization', request: (v) => ({ path: '/', headers: [['Authorization', raw(`Bearer ${v}`)]] }) },
        { name: 'X-Client-Id', request: (v) => ({ path: '/', headers: [['X-Client-Id', raw(v)]] }) },
        {
          name: '/secrets/:name',
          request: (v) => ({
            path: `/secrets/${encodeURIComponent(v)}`,
            headers: [['Authorization', `Bearer ${genuine}`]],
          }),
        },
      ];
    });

    it.each(TOKEN_VERIFICATIONS.map((mode) => [mode]))(
      'writes every hostile value escaped and cut short, in verification mode %s',
      async (mode) => {
        const store = await ctx.env.startSecretStore({ env: { VERIFICATION: mode } });
        const statuses: Record<string, number> = {};
        let requests = 0;
        try {
          await ready(ctx, store, genuine);
          for (const place of places) {
            for (const [what, value] of Object.entries(HOSTILE)) {
              const res = await rawCall(ctx.ledger, store.port, place.request(value));
              requests++;
              const key = `${res.status}`;
              statuses[key] = (statuses[key] ?? 0) + 1;
              if (answered(res) && res.status >= 500 && res.status !== 503) {
                throw new Error(`${place.name} with ${what}: answered ${res.status}`);
              }
            }
          }
        } finally {
          await store.stop();
        }
        const { injected, overLong, lines } = scan(await fs.readFile(store.logFile, 'utf8'), store.pid);
        const figures = (ctx.figures.logInjection ??= {
          values: Object.keys(HOSTILE).length,
          places: places.length,
          modes: 0,
          requests: 0,
          injected: 0,
          uncut: 0,
        });
        figures.modes++;
        figures.requests += requests;
        figures.injected += injected.length;
        figures.uncut += overLong.length;
        console.log(
          `log injection (${mode}): ${requests} hostile requests, answers ${JSON.stringify(statuses)}; ` +
            `${lines} log lines, ${injected.length} injected, ${overLong.length} over ${LONGEST_LINE} characters`,
        );
        // Shown escaped and cut, so that a failure does not do to the test's output what it found in the log.
        expect(injected.slice(0, 10).map((line) => JSON.stringify(line.slice(0, 300)))).toEqual([]);
        expect(overLong.map((line) => `${line.length} characters: ${JSON.stringify(line.slice(0, 100))}`)).toEqual([]);
      },
    );
  });
}

/** Header bytes as UTF-8 (U+2028 and the like go on the wire as sent; Node refuses raw controls itself). */
function raw(value: string): Buffer {
  return Buffer.from(value, 'utf8');
}

/** Ready to verify: a genuine token is let in (in the local modes, once the keys are fetched). */
async function ready(ctx: SuiteContext, store: RunningService, token: string): Promise<void> {
  const res = await call(ctx.ledger, store.url, { headers: { authorization: `Bearer ${token}` } });
  if (!answered(res) || res.status !== 200) throw new Error(`the store let a genuine token in with ${res.status}`);
}

/** The lines of a service's log that it did not write as its own (`[Nest] <its pid>  - …`), or that hold raw controls. */
function scan(text: string, pid: number): { injected: string[]; overLong: string[]; lines: number } {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const own = `[Nest] ${pid}  - `;
  return {
    injected: lines.filter((line) => !line.startsWith(own) || hasRawControl(line)),
    overLong: lines.filter((line) => line.length > LONGEST_LINE),
    lines: lines.length,
  };
}
