import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';

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
 * Drives `url + path` with autocannon over loopback. Latencies are taken from autocannon's per-response timings
 * (microsecond resolution) rather than its histogram, which rounds to whole milliseconds.
 */
export async function load(options: LoadOptions): Promise<LoadResult> {
  const target = new URL(options.path, options.url);
  if (target.hostname !== '127.0.0.1') throw new Error(`the benchmark drives loopback only, not ${target.host}`);
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let failed = 0;
  const nextToken = options.nextToken;
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  const serverCpu = options.serverCpuSeconds ?? (async () => cpuSeconds(options.serverPid));
  const serverBefore = await serverCpu();
  const started = process.hrtime.bigint();
  const driverBefore = process.cpuUsage();
  const mainBefore = cpuSeconds(options.serverPid, true);
  const instance = autocannon({
    url: target.toString(),
    connections: options.connections,
    pipelining: 1,
    timeout: 10,
    ...(options.amount ? { amount: options.amount } : { duration: options.duration ?? 5 }),
    headers,
    ...(nextToken
      ? {
          requests: [
            {
              method: 'GET',
              path: target.pathname,
              setupRequest: (request: autocannon.Request) => ({
                ...request,
                headers: { ...request.headers, authorization: `Bearer ${nextToken()}` },
              }),
            },
          ],
        }
      : {}),
    // Without a callback, autocannon returns its tracker (an event emitter) made thenable.
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  let lastResponse = started;
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    lastResponse = process.hrtime.bigint();
    if (statusCode < 200 || statusCode >= 300) {
      failed++;
      return;
    }
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = responseTime;
  });
  const guard = setTimeout(() => instance.stop(), options.maxSeconds * 1000);
  const result = await instance;
  clearTimeout(guard);
  // Up to the last response: autocannon notices that `amount` is reached only at its next 1-second tick.
  const seconds = Number(lastResponse - started) / 1e9;
  const driver = process.cpuUsage(driverBefore);
  const serverCpuShare = ((await serverCpu()) - serverBefore) / seconds;
  const serverMainCpu = (cpuSeconds(options.serverPid, true) - mainBefore) / seconds;
  const sorted = latencies.slice(0, count).sort();
  return {
    ok: count,
    failed: failed + result.errors + result.timeouts,
    seconds,
    rps: count / seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    latencies: sorted,
    driverCpu: (driver.user + driver.system) / 1e6 / seconds,
    serverCpu: serverCpuShare,
    serverMainCpu,
  };
}

/** User + system CPU seconds of process `pid` (or of its main thread) so far; NaN where /proc is not Linux's. */
function cpuSeconds(pid: number | undefined, mainThread = false): number {
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
