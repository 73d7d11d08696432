import { connect, constants } from 'node:http2';
import { cpuSeconds, Latencies, type LoadResult, percentile } from './load';

/** An empty request message (PingRequest has no fields), framed: not compressed, length 0. */
const EMPTY_MESSAGE = Buffer.alloc(5);

export interface GrpcLoadOptions {
  /** `127.0.0.1:port` of the store's gRPC listener. */
  target: string;
  method: 'Ping' | 'PublicPing';
  /** Calls in flight at once, over one HTTP/2 connection. */
  concurrency: number;
  duration: number;
  maxSeconds: number;
  /** Calls per second, evenly spaced; as fast as the server answers when unset. */
  rate?: number;
  /** Sent as `authorization: Bearer` with every call, to both methods alike. */
  token: string;
  serverPid: number;
  serverCpuSeconds: () => Promise<number>;
}

/**
 * Drives one method of the secret store's gRPC listener from this process, as load.ts drives its HTTP routes: the same
 * result, so the two transports' figures are read alike. The calls are gRPC's wire format sent with node:http2 (a POST
 * of one framed message, the status in the trailers), as autocannon sends HTTP: a grpc-js client costs the driver
 * several times as much per call, which on a shared CPU caps the rate. A status other than OK counts as failed.
 */
export async function grpcLoad(options: GrpcLoadOptions): Promise<LoadResult> {
  const session = connect(`http://${options.target}`);
  session.on('error', () => undefined); // each call reports its own failure
  const headers = {
    [constants.HTTP2_HEADER_METHOD]: 'POST',
    [constants.HTTP2_HEADER_PATH]: `/secretstore.v1.SecretStore/${options.method}`,
    'content-type': 'application/grpc',
    te: 'trailers',
    authorization: `Bearer ${options.token}`,
  };
  const call = () =>
    new Promise<boolean>((resolve) => {
      let status: unknown;
      const stream = session.request(headers);
      // A refusal may come as headers alone (trailers-only), an answer with trailers after the message.
      stream.on('response', (h) => (status ??= h['grpc-status']));
      stream.on('trailers', (t) => (status = t['grpc-status']));
      stream.on('error', () => undefined);
      stream.on('close', () => resolve(status === '0'));
      stream.resume();
      stream.end(EMPTY_MESSAGE);
    });
  try {
    await call(); // the connection, before the clock starts
    const seen = new Latencies();
    const total = options.rate ? Math.round(options.rate * options.duration) : Infinity;
    const serverBefore = await options.serverCpuSeconds();
    const mainBefore = cpuSeconds(options.serverPid, true);
    const driverBefore = process.cpuUsage();
    const started = process.hrtime.bigint();
    const start = performance.now();
    const deadline = start + (options.rate ? options.maxSeconds : options.duration) * 1000;
    let next = 0;
    // Workers take the next call; paced, the i-th leaves at start + i / rate.
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (next < total && performance.now() < deadline) {
          const i = next++;
          const wait = options.rate ? start + (i / options.rate) * 1000 - performance.now() : 0;
          if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
          const sent = performance.now();
          const ok = await call();
          seen.add(ok ? 200 : 0, performance.now() - sent);
        }
      }),
    );
    const seconds = Number(seen.lastResponse - started) / 1e9;
    const driver = process.cpuUsage(driverBefore);
    const serverCpu = ((await options.serverCpuSeconds()) - serverBefore) / seconds;
    const sorted = seen.values.slice(0, seen.ok).sort();
    return {
      ok: seen.ok,
      failed: seen.failed,
      seconds,
      rps: seen.ok / seconds,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      latencies: sorted,
      driverCpu: (driver.user + driver.system) / 1e6 / seconds,
      serverCpu,
      serverMainCpu: (cpuSeconds(options.serverPid, true) - mainBefore) / seconds,
    };
  } finally {
    session.close();
  }
}
