import 'reflect-metadata';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { Controller, Get, type INestApplicationContext, UseGuards } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Registry } from 'prom-client';
import { AllowNamespaces, Audience, K8sAuthModule, ServiceAccountGuard, TOKEN_AUTHENTICATOR } from '@k8s-auth/nestjs';
import { createPod, createServiceAccount, startControlPlane } from '@k8s-auth/nestjs/testing';
import { inParallel } from './lib/kube';

// What `local+watch` keeps for the pods of a watched namespace: the heap of an app whose allowlist names a namespace
// of POD_COUNT pods, against the same app watching an empty namespace, after GC. For comparison, the same pods as
// whole objects (what client-node's ListWatch would keep). Not part of `npm run bench`; creating the pods takes a
// few minutes. Run by hand:
//
//   SWC_NODE_PROJECT=tsconfig.base.json node --expose-gc -r @swc-node/register bench/watch-memory.ts [pods]

const POD_COUNT = Number(process.argv[2] ?? 10_000);
const CROWD = { namespace: 'crowd', name: 'svc' };
const EMPTY = { namespace: 'empty', name: 'svc' };

function heapMb(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** An app whose one guarded route allowlists `namespace`, in `local+watch` mode, once its watches have synced. */
async function watchingApp(kubeconfig: string, namespace: string): Promise<INestApplicationContext> {
  @Controller()
  @UseGuards(ServiceAccountGuard)
  @Audience('secret-store')
  @AllowNamespaces(namespace)
  class WatchedController {
    @Get()
    read(): string {
      return 'ok';
    }
  }
  const app = await NestFactory.createApplicationContext(
    {
      module: class WatchMemoryModule {},
      imports: [
        K8sAuthModule.forRoot({
          kubeconfig,
          audiences: ['secret-store'],
          verification: 'local+watch',
          metrics: new Registry(),
        }),
      ],
      controllers: [WatchedController],
    },
    { logger: ['error'] },
  );
  const authenticator = app.get<{ whenSynced?: () => Promise<void> }>(TOKEN_AUTHENTICATOR);
  if (!authenticator.whenSynced) throw new Error('the authenticator does not watch: not local+watch?');
  await authenticator.whenSynced();
  return app;
}

async function main(): Promise<void> {
  const cp = await startControlPlane();
  try {
    for (const account of [CROWD, EMPTY]) await createServiceAccount(cp.kubeConfig, account);
    let started = Date.now();
    await inParallel(POD_COUNT, 32, async (i) => {
      await createPod(cp.kubeConfig, CROWD, `pod-${String(i).padStart(5, '0')}`);
    });
    const createSeconds = (Date.now() - started) / 1000;

    // Same code loaded and warmed by both apps: the difference is what the pods cost.
    const empty = await watchingApp(cp.kubeconfigPath, EMPTY.namespace);
    const emptyMb = heapMb();
    await empty.close();

    const baseline = heapMb();
    started = Date.now();
    const crowd = await watchingApp(cp.kubeconfigPath, CROWD.namespace);
    const syncSeconds = (Date.now() - started) / 1000;
    const crowdMb = heapMb();
    const appMb = crowdMb - baseline;
    await crowd.close();

    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    const beforeObjects = heapMb();
    const pods: V1Pod[] = [];
    let next: string | undefined;
    do {
      const page = await core.listNamespacedPod({ namespace: CROWD.namespace, limit: 500, _continue: next });
      pods.push(...page.items);
      next = page.metadata?._continue;
    } while (next);
    const objectsMb = heapMb() - beforeObjects;

    const watchedMb = crowdMb - emptyMb;
    console.log(
      JSON.stringify({
        pods: POD_COUNT,
        createSeconds,
        syncSeconds,
        heapWatchingEmptyMb: round(emptyMb),
        heapWatchingCrowdMb: round(crowdMb),
        // The app watching the crowd against the app watching an empty namespace.
        watchedPodsMb: round(watchedMb),
        bytesPerPod: Math.round((watchedMb * 2 ** 20) / POD_COUNT),
        // The whole app (module, watches, caches) against none.
        appMb: round(appMb),
        wholePodObjectsMb: round(objectsMb),
        wholeBytesPerPod: Math.round((objectsMb * 2 ** 20) / pods.length),
      }),
    );
  } finally {
    await cp.stop();
  }
}

const round = (mb: number) => Math.round(mb * 100) / 100;

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
