import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { call, rawCall, type HttpOutcome, type RawHeader, type RawRequest } from './support/http';
import { sleep, type SuiteContext } from './support/context';
import { ACCOUNTS, type RunningService } from './support/environment';

const INPUTS = Number(process.env['FUZZ_INPUTS'] ?? 10_000);
const SEED = Number(process.env['FUZZ_SEED'] ?? 0x5ec0de);
const CONCURRENCY = 16;
const WARM_UP = 1_000;
/** How far above its warmed-up baseline the store may end: near, not equal (caches fill, the allocator keeps some). */
const HEAP_TOLERANCE = 8 * 2 ** 20;
const RSS_TOLERANCE = 32 * 2 ** 20;
/**
 * A hang is a finding too: each request that gets no answer within 20 s fails the area (`unanswered`). The whole
 * run's time is a figure; its own deadline only ends a hung run, far above what any machine needs.
 */
const RUN_DEADLINE_MS = 30 * 60_000;

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Random = () => number;
const int = (r: Random, min: number, max: number) => min + Math.floor(r() * (max - min + 1));
const pick = <T>(r: Random, items: readonly T[]): T => items[Math.floor(r() * items.length)];
const char = (r: Random, chars: string) => chars[Math.floor(r() * chars.length)];
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64url = (r: Random, length: number) => Array.from({ length }, () => char(r, B64URL)).join('');
const ascii = (r: Random, length: number) =>
  Array.from({ length }, () => String.fromCharCode(int(r, 0x20, 0x7e))).join('');
/** Any byte but CR and LF, which would end the header instead of being part of its value. */
const bytes = (r: Random, length: number) =>
  Buffer.from(Array.from({ length }, () => ((n) => (n === 10 || n === 13 ? 0x20 : n))(int(r, 0, 255))));
const unicode = (r: Random, length: number) =>
  Array.from({ length }, () =>
    String.fromCodePoint(
      pick(r, [0x200b, 0x202e, 0xfeff, 0x1f511, 0x0430, 0x00e9, 0x4e2d, 0xd7ff, int(r, 0x80, 0x10ffff)]),
    ),
  )
    .join('')
    .replace(/[\ud800-\udfff]/g, '?');
const SCHEMES = ['Bearer', 'bearer', 'BEARER', 'Basic', 'Negotiate', 'Token', 'Bearer:', 'Bearer\t', ''];
const ODD = [
  "' OR 1=1 --",
  '$(id)',
  '`id`',
  '{"token":"x"}',
  '../../etc/passwd',
  '%00',
  '\\u0000',
  '<script>',
  'null',
  'undefined',
];

/** Small damage to a real token: it still looks like one, so most of these reach TokenReview. */
function mutate(r: Random, token: string): string {
  let t = token;
  for (let i = int(r, 1, 3); i > 0; i--) {
    const at = int(r, 0, t.length - 1);
    const op = int(r, 0, 5);
    if (op === 0) t = `${t.slice(0, at)}${char(r, B64URL)}${t.slice(at + 1)}`;
    else if (op === 1) t = `${t.slice(0, at)}${t.slice(at + 1)}`;
    else if (op === 2) t = `${t.slice(0, at)}${pick(r, ['.', ' ', ',', '=', '+', '/', '%', '\t'])}${t.slice(at)}`;
    else if (op === 3) t = t.slice(0, at);
    else if (op === 4) t = t.split('.').reverse().join('.');
    else t = `${t}.${t.split('.')[2]}`;
  }
  return t;
}

function tokenValue(r: Random, real: string[]): string | Buffer {
  const token = pick(r, real);
  switch (int(r, 0, 13)) {
    case 0:
      return '';
    case 1:
      return Array.from({ length: int(r, 1, 8) }, () => pick(r, [' ', '\t'])).join('');
    case 2:
      return `${pick(r, SCHEMES)}${pick(r, ['', ' ', '  ', '\t'])}`;
    case 3:
      return `Bearer ${ascii(r, int(r, 0, 300))}`;
    case 4:
      return Buffer.concat([Buffer.from(`${pick(r, SCHEMES)} `), bytes(r, int(r, 0, 200))]);
    case 5:
      return `Bearer ${b64url(r, int(r, 0, 400))}.${b64url(r, int(r, 0, 800))}.${b64url(r, int(r, 0, 400))}`;
    case 6:
      return `Bearer ${Array.from({ length: pick(r, [1, 2, 4, 5]) }, () => b64url(r, int(r, 0, 60))).join(pick(r, ['.', '..']))}`;
    case 7:
      return `${pick(r, SCHEMES)} ${mutate(r, token)}`;
    case 8:
      return pick(r, [
        `Bearer ${token}${ascii(r, int(r, 1, 5))}`,
        `Bearer ${ascii(r, int(r, 1, 5))}${token}`,
        `Bearer ${token}, Bearer ${token}`,
      ]);
    case 9:
      return `Bearer ${'A'.repeat(int(r, 15_000, 70_000))}`;
    case 10:
      return Buffer.from(`Bearer ${unicode(r, int(r, 1, 40))}`, 'utf8');
    case 11:
      return `${pick(r, SCHEMES)} ${pick(r, ODD)}`;
    case 12:
      return `Bearer ${b64url(r, int(r, 10, 40))}=.${b64url(r, 20)}==.${b64url(r, 30)}`;
    default:
      return mutate(r, token);
  }
}

function name(r: Random): string {
  switch (int(r, 0, 11)) {
    case 0:
      return pick(r, ['db-password', 'api-key', 'a', 'x.y', '0']);
    case 1:
      return Array.from({ length: int(r, 1, 63) }, () => char(r, 'abcdefghijklmnopqrstuvwxyz0123456789-.')).join('');
    case 2:
      return ascii(r, int(r, 1, 40)).replace(/[ #?%]/g, 'Z');
    case 3:
      return 'a'.repeat(int(r, 250, 2000));
    case 4:
      return Array.from({ length: int(r, 1, 20) }, () => `%${int(r, 0, 255).toString(16).padStart(2, '0')}`).join('');
    case 5:
      return pick(r, [
        '%zz',
        '%E0%A4%A',
        '%',
        '%%',
        '%u0041',
        '%C0%AE%C0%AE',
        '%2e%2e%2fetc%2fpasswd',
        '%00',
        '%ff%fe',
      ]);
    case 6:
      return pick(r, ['..', '.', 'a..b', '-a', 'a-', 'A', 'Db-Password', '..%2f..%2f', '%2F']);
    case 7:
      return encodeURIComponent(unicode(r, int(r, 1, 10)));
    case 8:
      return `${name(r)}/${name(r)}`;
    case 9:
      return `${name(r)}?${ascii(r, int(r, 0, 30)).replace(/[ #]/g, '')}`;
    default:
      return b64url(r, int(r, 1, 80));
  }
}

function path(r: Random): string | Buffer {
  switch (int(r, 0, 9)) {
    case 0:
    case 1:
    case 2:
      return `/secrets/${name(r)}`;
    case 3:
      return pick(r, ['/', '/?', `/?${ascii(r, int(r, 0, 50)).replace(/[ #]/g, '')}`, '/#x', '//', '/.', '/./']);
    case 4:
      return pick(r, [
        '/secrets',
        '/secrets/',
        '/secrets//',
        '/SECRETS/x',
        '/secrets/a/b/c',
        '/;x',
        '/%2e%2e/',
        '/..',
        '/secrets/.%2e/',
      ]);
    case 5:
      return pick(r, ['http://127.0.0.1/secrets/x', 'http://127.0.0.1/', '*', 'secrets/x', '', '/\\secrets']);
    case 6:
      return Buffer.concat([Buffer.from('/secrets/'), bytes(r, int(r, 1, 30)).map((b) => (b === 0x20 ? 0x41 : b))]);
    case 7:
      return `/${'x/'.repeat(int(r, 100, 5000))}`;
    case 8:
      return `/${b64url(r, int(r, 1, 50))}`;
    default:
      return '/';
  }
}

const IDENTITY = ['X-Remote-User', 'X-Remote-Group', 'Impersonate-User', 'X-Forwarded-User', 'X-Forwarded-For'];

/** One generated request: header values and a path, sometimes another method, sometimes no token at all. */
export function generate(r: Random, real: string[]): RawRequest {
  const headers: RawHeader[] = [];
  const roll = r();
  let requestPath: string | Buffer;
  if (roll < 0.15) {
    // A genuine caller with a generated path: the RBAC route's parameter checks.
    headers.push(['Authorization', `Bearer ${real[0]}`]);
    requestPath = pick(r, [`/secrets/${name(r)}`, path(r)]);
  } else {
    requestPath = r() < 0.6 ? pick(r, ['/', '/secrets/db-password']) : path(r);
    const count = pick(r, [0, 1, 1, 1, 1, 2, 2, 3]);
    for (let i = 0; i < count; i++) {
      headers.push([
        pick(r, ['Authorization', 'X-Client-Id', 'authorization', 'AUTHORIZATION', 'x-client-id']),
        tokenValue(r, real),
      ]);
    }
  }
  if (r() < 0.1)
    headers.push([pick(r, IDENTITY), pick(r, ['system:serviceaccount:api:api', 'system:masters', ascii(r, 20)])]);
  const method = r() < 0.9 ? 'GET' : pick(r, ['HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'BREW', 'get']);
  return { method, path: requestPath, headers };
}

/** The process's RSS (from /proc) and its V8 heap in use after a full collection (from the memory probe). */
async function memoryOf(pid: number, probeFile: string): Promise<{ rss: number; heapUsed: number }> {
  await sleep(1200); // at least two of the probe's collections
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  const { heapUsed } = JSON.parse(readFileSync(probeFile, 'utf8')) as { heapUsed: number };
  return { rss: Number(kb) * 1024, heapUsed };
}

/**
 * Fuzz: generated header values and paths (seeded, so a failure can be replayed with FUZZ_SEED)
 * against the secret store's guarded routes. No 5xx, no request without an answer, the process
 * alive throughout, and its memory back near where it started.
 */
export function describeFuzz(ctx: SuiteContext): void {
  describe('fuzz', () => {
    let store: RunningService;
    let probeFile: string;

    beforeAll(async () => {
      // A secret store of its own, with the memory probe preloaded (the app itself is unchanged).
      probeFile = join(ctx.env.runDir, 'fuzz-memory.json');
      store = await ctx.env.startSecretStore({
        env: {
          NODE_OPTIONS: `--expose-gc --require ${join(__dirname, 'support', 'memory-probe.cjs')}`,
          MEMORY_PROBE_FILE: probeFile,
        },
      });
    });

    afterAll(() => store?.stop());

    it(
      `sends ${INPUTS} generated requests: no 5xx, no crash, memory back near its baseline`,
      async () => {
        const { env } = ctx;
        const real = [
          await env.readToken(env.tokenFiles.api),
          await env.readToken(env.tokenFiles.dataStore),
          await env.mint(ACCOUNTS.api, { audiences: [] }),
        ];
        const run = async (seed: number, count: number) => {
          const r = prng(seed);
          const requests = Array.from({ length: count }, () => generate(r, real));
          const outcomes: { request: RawRequest; outcome: HttpOutcome }[] = [];
          let next = 0;
          await Promise.all(
            Array.from({ length: CONCURRENCY }, async () => {
              while (next < requests.length) {
                const request = requests[next++];
                outcomes.push({ request, outcome: await rawCall(ctx.ledger, store.port, request, 20_000) });
              }
            }),
          );
          return outcomes;
        };

        // Warm up with other inputs, so that the baseline is that of a process that has served such traffic.
        await run(SEED ^ 0xffff, WARM_UP);
        const baseline = await memoryOf(store.pid, probeFile);
        const started = Date.now();
        const outcomes = await run(SEED, INPUTS);
        const elapsed = Date.now() - started;
        const after = await memoryOf(store.pid, probeFile);
        const health = await call(ctx.ledger, `${store.url}/healthz`);

        const statuses: Record<string, number> = {};
        for (const { outcome } of outcomes)
          statuses[outcome.status || 'none'] = (statuses[outcome.status || 'none'] ?? 0) + 1;
        const fiveXx = outcomes.filter((o) => o.outcome.status >= 500);
        const unanswered = outcomes.filter((o) => o.outcome.status === 0);
        ctx.figures.fuzz.inputs += outcomes.length;
        ctx.figures.fuzz.fiveXx += fiveXx.length;
        const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
        console.log(
          `fuzz: seed ${SEED}, ${outcomes.length} inputs in ${elapsed} ms; statuses ${JSON.stringify(statuses)}; ` +
            `after a warm-up of ${WARM_UP}: RSS ${mb(baseline.rss)} before, ${mb(after.rss)} after; ` +
            `heap in use after GC ${mb(baseline.heapUsed)} before, ${mb(after.heapUsed)} after`,
        );
        const describeRequest = (q: RawRequest) =>
          JSON.stringify({
            method: q.method,
            path: String(q.path).slice(0, 80),
            headers: q.headers?.map(([n, v]) => [n, String(v).slice(0, 40)]),
          });
        expect(fiveXx.map((o) => `${o.outcome.status} ${describeRequest(o.request)}`)).toEqual([]);
        expect(
          unanswered.map((o) => `${'error' in o.outcome ? o.outcome.error : ''} ${describeRequest(o.request)}`),
        ).toEqual([]);
        expect(store.process.running).toBe(true);
        expect(health.status).toBe(200);
        expect(after.heapUsed).toBeLessThan(baseline.heapUsed + HEAP_TOLERANCE);
        expect(after.rss).toBeLessThan(baseline.rss + RSS_TOLERANCE);
      },
      RUN_DEADLINE_MS,
    );
  });
}
