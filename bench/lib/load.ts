import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { inParallel } from './kube';

export interface LoadResult {
  /** Completed 2xx responses. */
  ok: number;
  /** Responses with another status, and socket errors/timeouts. */
  failed: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  latencies: Float64Array;
  /** CPU time used per second of the run (1 = one core busy): by this process (autocannon), and by the server. */
  driverCpu: number;
  serverCpu: number;
  /** The same for the server's main thread alone (its event loop), without its other threads. */
  serverMainCpu: number;
}

export interface LoadOptions {
  url: string;
  path: string;
  connections: number;
  /** Seconds to run; or `amount` requests. A hard stop after `maxSeconds` either way. */
  duration?: number;
  amount?: number;
  maxSeconds: number;
  /** Requests per second over all connections, evenly spaced; as fast as the server answers when unset. */
  rate?: number;
  /** One token for every request. */
  token?: string;
  /** A token per request: called once per request. */
  nextToken?: () => string;
  /** The server's pid, to report its CPU use (Linux /proc, in 10 ms ticks). */
  serverPid?: number;
  /** The server's CPU seconds so far, more precisely than /proc's ticks (a store's process metrics); else serverPid. */
  serverCpuSeconds?: () => Promise<number>;
}

/**
 * Drives `url + path` over loopback: as fast as the server answers with autocannon, or at a steady `rate` with
 * {@link pacedRequests}. Latencies are per response at microsecond resolution (not autocannon's histogram, which rounds
 * to whole milliseconds).
 */
export async function load(options: LoadOptions): Promise<LoadResult> {
  const target = new URL(options.path, options.url);
  if (target.hostname !== '127.0.0.1') throw new Error(`the benchmark drives loopback only, not ${target.host}`);
  const tokenFor = options.nextToken ?? (options.token ? () => options.token as string : undefined);
  const serverCpu = options.serverCpuSeconds ?? (async () => cpuSeconds(options.serverPid));
  const serverBefore = await serverCpu();
  const started = process.hrtime.bigint();
  const driverBefore = process.cpuUsage();
  const mainBefore = cpuSeconds(options.serverPid, true);
  const run = options.rate
    ? await pacedRequests(target, options.rate, options, tokenFor)
    : await autocannonRequests(target, options, tokenFor);
  // Up to the last response: autocannon notices that `amount` is reached only at its next 1-second tick.
  const seconds = Number(run.lastResponse - started) / 1e9;
  const driver = process.cpuUsage(driverBefore);
  const serverCpuShare = ((await serverCpu()) - serverBefore) / seconds;
  const serverMainCpu = (cpuSeconds(options.serverPid, true) - mainBefore) / seconds;
  const sorted = run.latencies.slice(0, run.ok).sort();
  return {
    ok: run.ok,
    failed: run.failed,
    seconds,
    rps: run.ok / seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    latencies: sorted,
    driverCpu: (driver.user + driver.system) / 1e6 / seconds,
    serverCpu: serverCpuShare,
    serverMainCpu,
  };
}

interface Requests {
  ok: number;
  failed: number;
  /** Milliseconds per 2xx response, in the first `ok` places. */
  latencies: Float64Array;
  lastResponse: bigint;
}

/** Latencies of 2xx responses, growing as needed. */
export class Latencies {
  values = new Float64Array(1 << 16);
  ok = 0;
  failed = 0;
  lastResponse = process.hrtime.bigint();

  add(statusCode: number, ms: number): void {
    this.lastResponse = process.hrtime.bigint();
    if (statusCode < 200 || statusCode >= 300) {
      this.failed++;
      return;
    }
    if (this.ok === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.ok++] = ms;
  }
}

async function autocannonRequests(
  target: URL,
  options: LoadOptions,
  tokenFor: (() => string) | undefined,
): Promise<Requests> {
  const seen = new Latencies();
  const instance = autocannon({
    url: target.toString(),
    connections: options.connections,
    pipelining: 1,
    timeout: 10,
    ...(options.amount ? { amount: options.amount } : { duration: options.duration ?? 5 }),
    requests: [
      {
        method: 'GET',
        path: target.pathname,
        setupRequest: (request: autocannon.Request) =>
          tokenFor ? { ...request, headers: { ...request.headers, authorization: `Bearer ${tokenFor()}` } } : request,
      },
    ],
    // Without a callback, autocannon returns its tracker (an event emitter) made thenable.
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) =>
    seen.add(statusCode, responseTime),
  );
  const guard = setTimeout(() => instance.stop(), options.maxSeconds * 1000);
  const result = await instance;
  clearTimeout(guard);
  return {
    ok: seen.ok,
    failed: seen.failed + result.errors + result.timeouts,
    latencies: seen.values,
    lastResponse: seen.lastResponse,
  };
}

/**
 * Request i leaves at i / rate seconds, over `connections` keep-alive connections with one request in flight each: an
 * even stream, unlike autocannon's rate limit, which sends each second's quota at once and then idles.
 */
async function pacedRequests(
  target: URL,
  rate: number,
  options: LoadOptions,
  tokenFor: (() => string) | undefined,
): Promise<Requests> {
  const seen = new Latencies();
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const total = options.amount ?? Math.round(rate * (options.duration ?? 5));
  const deadline = performance.now() + options.maxSeconds * 1000;
  const get = (headers: Record<string, string>) =>
    new Promise<number>((resolve) => {
      const req = httpRequest(target, { agent, headers, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(0));
      req.end();
    });
  try {
    await inParallel(
      total,
      options.connections,
      async () => {
        if (performance.now() >= deadline) return;
        const sent = performance.now();
        const status = await get(tokenFor ? { authorization: `Bearer ${tokenFor()}` } : {});
        seen.add(status, performance.now() - sent);
      },
      rate,
    );
  } finally {
    agent.destroy();
  }
  return { ok: seen.ok, failed: seen.failed, latencies: seen.values, lastResponse: seen.lastResponse };
}

/** User + system CPU seconds of process `pid` (or of its main thread) so far; NaN where /proc is not Linux's. */
export function cpuSeconds(pid: number | undefined, mainThread = false): number {
  if (!pid) return Number.NaN;
  try {
    // Fields after the command (which may hold spaces) start after the last ')'; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    const fields =
      readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8')
        .split(')')
        .pop()
        ?.trim()
        .split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** The `q` quantile of sorted values (nearest rank). */
export function percentile(sorted: Float64Array | number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Several runs of one route together: total requests over total time, and quantiles of all latencies. */
export function combine(runs: LoadResult[]): LoadResult {
  const all = new Float64Array(runs.reduce((n, r) => n + r.latencies.length, 0));
  let offset = 0;
  for (const r of runs) {
    all.set(r.latencies, offset);
    offset += r.latencies.length;
  }
  all.sort();
  const ok = runs.reduce((n, r) => n + r.ok, 0);
  const seconds = runs.reduce((n, r) => n + r.seconds, 0);
  const weighted = (pick: (r: LoadResult) => number) => runs.reduce((n, r) => n + pick(r) * r.seconds, 0) / seconds;
  return {
    ok,
    failed: runs.reduce((n, r) => n + r.failed, 0),
    seconds,
    rps: ok / seconds,
    p50: percentile(all, 0.5),
    p99: percentile(all, 0.99),
    latencies: all,
    driverCpu: weighted((r) => r.driverCpu),
    serverCpu: weighted((r) => r.serverCpu),
    serverMainCpu: weighted((r) => r.serverMainCpu),
  };
}
