import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  countApiServerRequests,
  createClusterObjects,
  createPod,
  deletePod,
  kubeConfigFor,
  mintServiceAccountToken,
  type ServiceAccountRef,
  startControlPlane,
} from '@k8s-auth/nestjs/testing';
import { percentile } from './lib/load';
import { startStore } from './lib/store';

// How long a deleted pod's token is still accepted by the built secret store in `local+watch` mode: per round, a new
// pod of api/api and a token bound to it, accepted once; then the pod is deleted and the token is sent every 10 ms
// until the store refuses it. The cluster objects and RBAC are k8s/base's (the store's watch Role included), and the
// store runs with its own service account's credentials. Not part of `npm run bench`; run by hand after a build:
//
//   npx nx build secret-store && SWC_NODE_PROJECT=tsconfig.base.json node -r @swc-node/register bench/revocation.ts [rounds]

const ROOT = resolve(__dirname, '..');
const API: ServiceAccountRef = { namespace: 'api', name: 'api' };
const STORE: ServiceAccountRef = { namespace: 'secret-store', name: 'secret-store' };
const ROUNDS = Number(process.argv[2] ?? 30);
const POLL_MS = 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function status(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}/ping`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}

async function accepted(url: string, token: string): Promise<void> {
  const answer = await status(url, token);
  if (answer !== 200) throw new Error(`the store answered ${answer} to a valid token`);
}

async function main(): Promise<void> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'bench-revocation-'));
  const cp = await startControlPlane();
  /** A new pod of api/api and a token for the store bound to it. */
  const podToken = async (name: string) => {
    const pod = await createPod(cp.kubeConfig, API, name);
    const minted = await mintServiceAccountToken(cp.kubeConfig, API, {
      audiences: ['secret-store'],
      expirationSeconds: 600,
      boundObject: { kind: 'Pod', ...pod },
    });
    return minted.token;
  };
  try {
    await createClusterObjects(cp.kubeConfig, join(ROOT, 'k8s', 'base'));
    const kubeconfig = join(dir, 'secret-store.kubeconfig');
    await fs.writeFile(kubeconfig, (await kubeConfigFor(cp.kubeConfig, STORE)).exportConfig());
    const store = await startStore({
      name: 'store-local-watch',
      dir,
      kubeconfig,
      env: { VERIFICATION: 'local+watch' },
    });
    try {
      // Until its watches hold their first lists (a fraction of a second), the store asks TokenReview: counted apart.
      await accepted(store.url, await podToken('api-warm-up'));
      await sleep(1000);
      const reviewsBefore = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      const fromDelete: number[] = [];
      const afterDelete: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const name = `api-revoked-${round}`;
        const token = await podToken(name);
        await accepted(store.url, token);
        const started = performance.now();
        await deletePod(cp.kubeConfig, API.namespace, name);
        const deleted = performance.now();
        for (;;) {
          const answer = await status(store.url, token);
          if (answer === 403) break;
          if (answer !== 200) throw new Error(`round ${round}: the store answered ${answer}`);
          if (performance.now() - started > 120_000) throw new Error(`round ${round}: still accepted after 2 min`);
          await sleep(POLL_MS);
        }
        const refused = performance.now();
        fromDelete.push(refused - started);
        afterDelete.push(refused - deleted);
      }
      const reviews = (await countApiServerRequests(cp.kubeConfig, 'tokenreviews')) - reviewsBefore;
      const summary = (values: number[]) => {
        const sorted = [...values].sort((a, b) => a - b);
        const at = (q: number) => Math.round(percentile(sorted, q) * 10) / 10;
        return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
      };
      console.log(
        JSON.stringify({
          verification: 'local+watch',
          rounds: ROUNDS,
          pollMs: POLL_MS,
          // From the start of the DELETE call (its own time included), and from its answer, to the first 403.
          msFromDeleteCall: summary(fromDelete),
          msAfterDeleteAnswered: summary(afterDelete),
          tokenReviews: reviews,
        }),
      );
    } finally {
      await store.stop();
    }
  } finally {
    await cp.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
