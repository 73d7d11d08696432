import type { KubeConfig } from '@kubernetes/client-node';
import { Agent, request, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ServiceAccountRef } from '@k8s-auth/nestjs/testing';

/**
 * JSON over one keep-alive HTTPS agent, for the benchmark's own calls to the API server (minting thousands of tokens
 * through TokenRequest, timing bare TokenReviews): `@kubernetes/client-node` opens a connection per call, which would
 * make minting slower than the work being measured.
 */
export class KubeClient {
  private constructor(
    private readonly server: URL,
    private readonly options: RequestOptions,
    private readonly agent: Agent,
  ) {}

  static async create(kubeConfig: KubeConfig, maxSockets = 32): Promise<KubeClient> {
    const options: RequestOptions = {};
    await kubeConfig.applyToHTTPSOptions(options);
    const server = new URL(kubeConfig.getCurrentCluster()?.server ?? '');
    if (server.hostname !== '127.0.0.1') throw new Error(`the benchmark talks to loopback only, not ${server.host}`);
    const agent = new Agent({ keepAlive: true, maxSockets, ca: options.ca, cert: options.cert, key: options.key });
    return new KubeClient(server, options, agent);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    const payload = JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request(
        new URL(path, this.server),
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            ...(this.options.headers as Record<string, string>),
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
          },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if ((res.statusCode ?? 0) >= 300) reject(new Error(`POST ${path}: HTTP ${res.statusCode}: ${text}`));
            else resolve(JSON.parse(text) as T);
          });
        },
      );
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error(`POST ${path} timed out`)));
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * Runs `work(i)` for i in [0, count) with at most `concurrency` at once. With `rate`, work i starts no earlier than
 * i / rate seconds after the call: an even stream, as long as the work keeps up.
 */
export async function inParallel(
  count: number,
  concurrency: number,
  work: (i: number) => Promise<void>,
  rate?: number,
): Promise<void> {
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const i = next++;
        const wait = rate ? start + (i / rate) * 1000 - performance.now() : 0;
        if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
        await work(i);
      }
    }),
  );
}

/** Mints `count` real tokens through TokenRequest, `concurrency` at a time. */
export async function mintTokens(
  client: KubeClient,
  account: ServiceAccountRef,
  options: { count: number; audiences: string[]; pod?: { name: string; uid: string }; concurrency?: number },
): Promise<string[]> {
  const tokens: string[] = new Array(options.count);
  const path = `/api/v1/namespaces/${account.namespace}/serviceaccounts/${account.name}/token`;
  const body = {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: {
      audiences: options.audiences,
      expirationSeconds: 3600,
      ...(options.pod ? { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', ...options.pod } } : {}),
    },
  };
  await inParallel(options.count, options.concurrency ?? 16, async (i) => {
    const answer = await client.post<{ status?: { token?: string } }>(path, body);
    if (!answer.status?.token) throw new Error('TokenRequest returned no token');
    tokens[i] = answer.status.token;
  });
  return tokens;
}

/** A TokenReview as the store makes it, for timing the bare round trip. */
export async function tokenReview(client: KubeClient, token: string, audiences: string[]): Promise<boolean> {
  const review = await client.post<{ status?: { authenticated?: boolean } }>(
    '/apis/authentication.k8s.io/v1/tokenreviews',
    { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } },
  );
  return review.status?.authenticated === true;
}

// The worker is TypeScript: it loads through the benchmark's own loader (SWC_NODE_PROJECT is inherited).
const SIGNER = `require('@swc-node/register'); require(${JSON.stringify(join(__dirname, 'sign-tokens.worker.ts'))});`;

/**
 * Signs `count` distinct tokens (each its own `jti`) with `claims`, as the API server would with `keyPem`, on
 * `workers` threads, with the testing kit's signJwt. The API server accepts them like the ones it mints, when it
 * trusts the key.
 */
export async function signTokens(
  keyPem: string,
  alg: 'RS256' | 'ES256',
  claims: Record<string, unknown>,
  count: number,
  workers = 2,
): Promise<string[]> {
  const shares = Array.from({ length: workers }, (_, i) => Math.floor(count / workers) + (i < count % workers ? 1 : 0));
  const parts = await Promise.all(
    shares.map(
      (share) =>
        new Promise<string[]>((resolve, reject) => {
          const worker = new Worker(SIGNER, { eval: true, workerData: { keyPem, alg, claims, count: share } });
          worker.once('message', (tokens: string[]) => {
            resolve(tokens);
            void worker.terminate();
          });
          worker.once('error', reject);
        }),
    ),
  );
  return parts.flat();
}
