import type { KubeConfig } from '@kubernetes/client-node';
import { createPod, deletePod, mintServiceAccountToken, type ServiceAccountRef } from '@k8s-auth/nestjs/testing';
import { percentile } from './load';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The status a store answers to `GET path` with `token`. */
export async function statusOf(url: string, path: string, token: string): Promise<number> {
  const res = await fetch(new URL(path, url), { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}

/** A new pod of `account` named `podName`, and a token for `audience` bound to it. */
export async function podBoundToken(
  kubeConfig: KubeConfig,
  account: ServiceAccountRef,
  audience: string,
  podName: string,
): Promise<string> {
  const pod = await createPod(kubeConfig, account, podName);
  const minted = await mintServiceAccountToken(kubeConfig, account, {
    audiences: [audience],
    expirationSeconds: 600,
    boundObject: { kind: 'Pod', ...pod },
  });
  return minted.token;
}

/**
 * Resolves once a `local+watch` store answers a new token from its watches: accepted with no TokenReview. Until its
 * watches hold their first lists (and while its RBAC is not effective yet), it asks TokenReview instead. Each probe
 * needs a token the store has not seen: a reviewed one stays cached. Nothing else may make TokenReviews meanwhile.
 */
export async function untilServedFromWatches(options: {
  url: string;
  path: string;
  nextToken: () => Promise<string>;
  reviews: () => Promise<number>;
  timeoutMs?: number;
}): Promise<void> {
  const deadline = performance.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    const token = await options.nextToken();
    const before = await options.reviews();
    const answer = await statusOf(options.url, options.path, token);
    if (answer !== 200) throw new Error(`the store answered ${answer} to a valid token`);
    if ((await options.reviews()) === before) return;
    if (performance.now() > deadline) throw new Error('the store still asks TokenReview: are its watches allowed?');
    await sleep(200);
  }
}

export interface RevocationOptions {
  /** An administrator's: creates and deletes the pods, mints the tokens. */
  kubeConfig: KubeConfig;
  /** The store, and its guarded route. */
  url: string;
  path: string;
  account: ServiceAccountRef;
  audience: string;
  rounds: number;
  pollMs: number;
  /** Pods are named `<podPrefix>-<round>`. */
  podPrefix: string;
  /** A round fails when its token is still accepted this long after the DELETE. @default 120_000 */
  timeoutMs?: number;
}

export interface RevocationTimes {
  /** Per round, from the start of the DELETE call (its own time included) to the first 403. */
  fromDeleteCallMs: number[];
  /** Per round, from the DELETE's answer to the first 403. */
  afterDeleteAnsweredMs: number[];
}

/**
 * How long a deleted pod's token is still accepted: per round, a new pod of `account` and a token bound to it,
 * accepted once; then the pod is deleted and the token is sent every `pollMs` until the store refuses it (403).
 * Any other answer fails the round.
 */
export async function measureRevocation(options: RevocationOptions): Promise<RevocationTimes> {
  const times: RevocationTimes = { fromDeleteCallMs: [], afterDeleteAnsweredMs: [] };
  const timeoutMs = options.timeoutMs ?? 120_000;
  for (let round = 0; round < options.rounds; round++) {
    const name = `${options.podPrefix}-${round}`;
    const token = await podBoundToken(options.kubeConfig, options.account, options.audience, name);
    const first = await statusOf(options.url, options.path, token);
    if (first !== 200) throw new Error(`round ${round}: the store answered ${first} to a valid token`);
    const started = performance.now();
    await deletePod(options.kubeConfig, options.account.namespace, name);
    const deleted = performance.now();
    for (;;) {
      const answer = await statusOf(options.url, options.path, token);
      if (answer === 403) break;
      if (answer !== 200) throw new Error(`round ${round}: the store answered ${answer}`);
      if (performance.now() - started > timeoutMs) {
        throw new Error(`round ${round}: still accepted ${timeoutMs} ms after the DELETE`);
      }
      await sleep(options.pollMs);
    }
    const refused = performance.now();
    times.fromDeleteCallMs.push(refused - started);
    times.afterDeleteAnsweredMs.push(refused - deleted);
  }
  return times;
}

export interface Quantiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank quantiles of milliseconds, to 0.1 ms. */
export function quantiles(values: number[]): Quantiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => Math.round(percentile(sorted, q) * 10) / 10;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
}
