import type { SecurityEnvironment, RunningService } from './environment';
import type { CollectingLogger, SecretLedger } from './ledger';

/** The figures each area reports; the summary lines are made from them. */
export class Figures {
  readonly attacks = { tried: 0, accepted: 0 };
  readonly faults = { scenarios: 0, lost: 0, unexpected5xx: 0 };
  readonly fuzz = { inputs: 0, fiveXx: 0 };
  /** A local+watch store's revocation (the attacks area): ms from each DELETE to the first 403, TokenReviews made. */
  watchRevocation: { podMs: number; serviceAccountMs: number; reviews: number } | undefined;
  /**
   * A local+watch store on default options behind a silent partition (the faults area): the latest acceptance of a
   * deleted pod's token after its DELETE, for a token accepted before the partition and one never seen, and the
   * control (the same deletion with no partition).
   */
  partition: { cachedMs: number; unseenMs: number; requests: number; controlMs: number } | undefined;
  /** Modes × faults whose answers were checked against the README's failure table, and how many differed. */
  failureSemantics: { cells: number; wrong: number } | undefined;
  secrets: { leaks: number; lines: number } | undefined;
  /** Hostile values in request and token fields, through each verification mode; lines they injected in the logs. */
  logInjection:
    | { values: number; places: number; modes: number; requests: number; injected: number; uncut: number }
    | undefined;
  /** What tokens cost the API server and its callers (the review-budget area); each set once measured. */
  readonly reviews: {
    malformed?: { tokens: number; reviews: number };
    expired?: { tokens: number; reviews: number };
    nonCanonical?: { reviews: number };
    flood?: { forgeries: number; accepted: number; unexpected5xx: number; answered503: number };
    cachedCaller?: { forgeries: number; bound: number; reviews: number };
    inFlight?: { burst: number; atOnce: number; accepted: number; unexpected5xx: number };
  } = {};
  /** What RBAC decisions (SubjectAccessReviews) cost (the access-budget area); each set once measured. */
  readonly access: {
    flood?: { deniedNames: number; bound: number; allowedStatus: number };
    inFlight?: { burst: number; atOnce: number; accepted: number; unexpected5xx: number };
  } = {};

  /** One line per area that ran, in the suite's order. */
  lines(): string[] {
    const lines: string[] = [];
    if (this.attacks.tried > 0) {
      lines.push(`security: ${this.attacks.tried} attacks tried, ${this.attacks.accepted} accepted`);
    }
    if (this.watchRevocation) {
      const { podMs, serviceAccountMs, reviews } = this.watchRevocation;
      lines.push(
        `revocation (local+watch): deleted pod refused after ${Math.round(podMs)} ms, ` +
          `re-created service account after ${Math.round(serviceAccountMs)} ms, ${reviews} TokenReviews`,
      );
    }
    if (this.faults.scenarios > 0) {
      lines.push(
        `faults: ${this.faults.scenarios} scenarios, ${this.faults.lost} lost requests, ` +
          `${this.faults.unexpected5xx} 5xx other than 503`,
      );
    }
    if (this.partition) {
      const { cachedMs, unseenMs, requests, controlMs } = this.partition;
      const after = (ms: number) => (ms < 0 ? 'never accepted' : `accepted until ${Math.round(ms)} ms`);
      lines.push(
        `partition (local+watch, defaults): deleted pods' tokens ${after(cachedMs)} (cached), ${after(unseenMs)} ` +
          `(never seen) after the DELETE, in ${requests} requests; without a partition refused after ${Math.round(controlMs)} ms`,
      );
    }
    if (this.failureSemantics) {
      const { cells, wrong } = this.failureSemantics;
      lines.push(`failure semantics: ${cells} mode × fault cells checked against the README's table, ${wrong} differ`);
    }
    if (this.fuzz.inputs > 0) lines.push(`fuzz: ${this.fuzz.inputs} inputs, ${this.fuzz.fiveXx} 5xx`);
    const { malformed, expired, nonCanonical, flood, cachedCaller, inFlight } = this.reviews;
    if (malformed) lines.push(`reviews for ${malformed.tokens} tokens that are not JWTs: ${malformed.reviews}`);
    if (expired) lines.push(`reviews for ${expired.tokens} expired forgeries: ${expired.reviews}`);
    if (nonCanonical) lines.push(`reviews for a non-canonical spelling of a genuine token: ${nonCanonical.reviews}`);
    if (flood) {
      lines.push(
        `flood: ${flood.forgeries} forgeries, ${flood.accepted} accepted, ${flood.unexpected5xx} 5xx other than 503 ` +
          `(${flood.answered503} answered 503)`,
      );
    }
    if (cachedCaller) {
      lines.push(
        `reviews the cached caller needed after ${cachedCaller.forgeries} refused forgeries ` +
          `(cache bound ${cachedCaller.bound}): ${cachedCaller.reviews}`,
      );
    }
    if (inFlight) {
      lines.push(
        `in flight: ${inFlight.burst} new forgeries at once on a slow API server, ${inFlight.atOnce} answered 503 at once, ` +
          `${inFlight.accepted} accepted, ${inFlight.unexpected5xx} 5xx other than 503`,
      );
    }
    if (this.access.flood) {
      const { deniedNames, bound, allowedStatus } = this.access.flood;
      lines.push(
        `rbac flood: ${deniedNames} denied names (cache bound ${bound}), ` +
          `allowed caller ${allowedStatus} with the API server unreachable`,
      );
    }
    if (this.access.inFlight) {
      const { burst, atOnce, accepted, unexpected5xx } = this.access.inFlight;
      lines.push(
        `rbac in flight: ${burst} denied names at once on a slow API server, ${atOnce} answered 503 at once, ` +
          `${accepted} accepted, ${unexpected5xx} 5xx other than 503`,
      );
    }
    if (this.logInjection) {
      const { values, places, modes, requests, injected, uncut } = this.logInjection;
      lines.push(
        `log injection: ${values} hostile values in ${places} places through ${modes} verification modes ` +
          `(${requests} requests), ${injected} injected lines, ${uncut} lines with a value not cut short`,
      );
    }
    if (this.secrets) lines.push(`secrets: ${this.secrets.leaks} leaks in ${this.secrets.lines} log lines`);
    return lines;
  }
}

/** What the areas share; filled in by the suite's beforeAll. */
export interface SuiteContext {
  readonly ledger: SecretLedger;
  readonly logger: CollectingLogger;
  readonly figures: Figures;
  env: SecurityEnvironment;
  /** The secret store every area talks to (a real process of the built app). */
  store: RunningService;
  /** In-process metrics registries, scanned by the secrets area. */
  readonly registries: { metrics(): Promise<string> }[];
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a value, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

/**
 * A count (e.g. the API server's TokenReviews) once two reads half a second apart agree: nothing still under way.
 * `count` reads it (the testing kit's countApiServerRequests on an administrator's configuration).
 */
export async function settledCount(count: () => Promise<number>, timeoutMs: number): Promise<number> {
  let last = await count();
  return eventually(
    'the TokenReview count settled',
    async () => {
      await sleep(500);
      const now = await count();
      if (now === last) return now;
      last = now;
      return undefined;
    },
    timeoutMs,
    0,
  );
}
