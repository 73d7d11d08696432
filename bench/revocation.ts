import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  countApiServerRequests,
  createClusterObjects,
  kubeConfigFor,
  type ServiceAccountRef,
  startControlPlane,
} from '@k8s-auth/nestjs/testing';
import { measureRevocation, podBoundToken, quantiles, untilServedFromWatches } from './lib/revocation';
import { startStore } from './lib/store';

// How long a deleted pod's token is still accepted by the built secret store in `local+watch` mode: per round, a new
// pod of api/api and a token bound to it, accepted once; then the pod is deleted and the token is sent every 10 ms
// until the store refuses it (bench/lib/revocation.ts, which `npm run bench`'s watch phase runs too). The cluster
// objects and RBAC are k8s/base's (the store's watch Role included), and the store runs with its own service
// account's credentials. Run by hand after a build:
//
//   npx nx build secret-store && SWC_NODE_PROJECT=tsconfig.base.json node -r @swc-node/register bench/revocation.ts [rounds]

const ROOT = resolve(__dirname, '..');
const API: ServiceAccountRef = { namespace: 'api', name: 'api' };
const STORE: ServiceAccountRef = { namespace: 'secret-store', name: 'secret-store' };
const ROUNDS = Number(process.argv[2] ?? 30);
const POLL_MS = 10;

async function main(): Promise<void> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'bench-revocation-'));
  const cp = await startControlPlane();
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
      const reviews = () => countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      // Until its watches hold their first lists (a fraction of a second), the store asks TokenReview: not counted.
      let warmUp = 0;
      await untilServedFromWatches({
        url: store.url,
        path: '/ping',
        nextToken: () => podBoundToken(cp.kubeConfig, API, 'secret-store', `api-warm-up-${warmUp++}`),
        reviews,
      });
      const reviewsBefore = await reviews();
      const times = await measureRevocation({
        kubeConfig: cp.kubeConfig,
        url: store.url,
        path: '/ping',
        account: API,
        audience: 'secret-store',
        rounds: ROUNDS,
        pollMs: POLL_MS,
        podPrefix: 'api-revoked',
      });
      console.log(
        JSON.stringify({
          verification: 'local+watch',
          rounds: ROUNDS,
          pollMs: POLL_MS,
          // From the start of the DELETE call (its own time included), and from its answer, to the first 403.
          msFromDeleteCall: quantiles(times.fromDeleteCallMs),
          msAfterDeleteAnswered: quantiles(times.afterDeleteAnsweredMs),
          tokenReviews: (await reviews()) - reviewsBefore,
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
