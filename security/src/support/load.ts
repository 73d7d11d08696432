import { answered, type HttpOutcome } from './http';

/** Requests sent in a loop by a few concurrent workers until stopped; every outcome is kept. */
export class Load {
  readonly outcomes: { name: string; outcome: HttpOutcome }[] = [];
  private running = true;
  private readonly workers: Promise<void>[] = [];

  constructor(requests: Record<string, () => Promise<HttpOutcome>>, concurrencyEach = 2) {
    for (const [name, send] of Object.entries(requests)) {
      for (let i = 0; i < concurrencyEach; i++) {
        this.workers.push(
          (async () => {
            while (this.running) {
              this.outcomes.push({ name, outcome: await send() });
              await new Promise((r) => setTimeout(r, 5));
            }
          })(),
        );
      }
    }
  }

  async stop(): Promise<this> {
    this.running = false;
    await Promise.all(this.workers);
    return this;
  }

  /** Requests that got no answer at all. */
  get lost(): number {
    return this.outcomes.filter((o) => !answered(o.outcome)).length;
  }

  /** Statuses by request name, e.g. `{ 'api GET /': { 200: 412 } }`. */
  summary(): Record<string, Record<string, number>> {
    const result: Record<string, Record<string, number>> = {};
    for (const { name, outcome } of this.outcomes) {
      const key = answered(outcome) ? String(outcome.status) : `no answer (${outcome.error})`;
      result[name] ??= {};
      result[name][key] = (result[name][key] ?? 0) + 1;
    }
    return result;
  }
}

/** 5xx answers other than 503 (which is the documented answer when Kubernetes cannot answer). */
export function unexpected5xx(outcomes: HttpOutcome[]): number {
  return outcomes.filter((o) => o.status >= 500 && o.status !== 503).length;
}

/** What {@link sendBounded} sent: every outcome, in the order the answers came (fewer than asked if time ran out). */
export interface BoundedRun {
  outcomes: HttpOutcome[];
  elapsedMs: number;
}

/**
 * Sends `count` requests (`send(i)` for i = 0 … count - 1), `concurrency` at a time, and sends no more
 * once `budgetMs` has passed: a flood that the target slows down ends in bounded time all the same.
 */
export async function sendBounded(
  count: number,
  concurrency: number,
  budgetMs: number,
  send: (index: number) => Promise<HttpOutcome>,
): Promise<BoundedRun> {
  const outcomes: HttpOutcome[] = [];
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count && Date.now() - started < budgetMs) outcomes.push(await send(next++));
    }),
  );
  return { outcomes, elapsedMs: Date.now() - started };
}
