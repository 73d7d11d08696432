import { randomUUID } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { signJwt } from '@k8s-auth/nestjs/testing';

// A worker thread of signTokens (bench/lib/kube.ts): signs its share of the tokens and posts them back.

const { keyPem, alg, claims, count } = workerData as {
  keyPem: string;
  alg: string;
  claims: Record<string, unknown>;
  count: number;
};
parentPort?.postMessage(
  Array.from({ length: count }, () => signJwt(keyPem, { ...claims, jti: randomUUID() }, { alg })),
);
