import { KubeConfig } from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import { inParallel, KubeClient, tokenReview } from './kube';
import { scriptMain } from './script';

/** What the benchmark hands this process (JSON in BENCH_BARE_INPUT). */
export interface BareReviewsInput {
  kubeconfig: string;
  /** A JSON array of tokens: the first `warmUp` are reviewed before measuring (JIT, connections), the rest measured. */
  tokensFile: string;
  warmUp: number;
  audiences: string[];
  concurrency: number;
  /** Measured reviews per second, evenly spaced (as the cold run went); as fast as answered when unset. */
  rate?: number;
}

export interface BareReviewsOutput {
  reviews: number;
  /** This process's CPU (all threads) per measured review. */
  cpuUs: number;
  rps: number;
}

// The cold phase's floor: TokenReviews from a bare Node client (keep-alive HTTPS, up to `concurrency` in flight, at
// `rate`), in a process of its own that the benchmark pins where the stores run. Prints a BareReviewsOutput as JSON.
async function bareReviews(input: BareReviewsInput): Promise<BareReviewsOutput> {
  const tokens = JSON.parse(readFileSync(input.tokensFile, 'utf8')) as string[];
  const config = new KubeConfig();
  config.loadFromFile(input.kubeconfig);
  const client = await KubeClient.create(config, input.concurrency);
  const review = async (token: string) => {
    if (!(await tokenReview(client, token, input.audiences))) throw new Error('token refused');
  };
  try {
    await inParallel(input.warmUp, input.concurrency, (i) => review(tokens[i]));
    const measured = tokens.slice(input.warmUp);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await inParallel(measured.length, input.concurrency, (i) => review(measured[i]), input.rate);
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    return {
      reviews: measured.length,
      cpuUs: (cpu.user + cpu.system) / measured.length,
      rps: measured.length / seconds,
    };
  } finally {
    client.close();
  }
}

scriptMain('BENCH_BARE_INPUT', bareReviews);
