import { Logger } from '@nestjs/common';
import { promises as fs } from 'node:fs';
import { readTokenTimes, renewalTime, type TokenTimes } from './token-times';
import type { ResolvedProjectedTokenFile, ResolvedTokenRequest } from '../module/resolved-token-sources';
import type { KubernetesApiClient } from '../kube/kubernetes-api.client';

/** No valid token is at hand: the outgoing call cannot be authenticated. */
export class TokenUnavailableError extends Error {
  override readonly name = 'TokenUnavailableError';
}

/** This service's own token, for outgoing calls. */
export interface TokenSource {
  readonly name: string;
  /** The current token. @throws TokenUnavailableError when there is no valid one. */
  token(): string;
  /** When the current token expires, if known. */
  readonly expiresAt: Date | undefined;
  /** Gets a token now (re-reads the file, or mints one), e.g. after the callee answered 401. */
  refresh(): Promise<void>;
}

const RETRY_SOON_MS = 10_000;
const MIN_DELAY_MS = 1_000;

/**
 * Signature sizes in bytes of the algorithms Kubernetes signs ServiceAccount tokens with: RSA's is
 * its modulus (2048 to 8192 bits), ECDSA's is fixed by the curve. Undefined: not checked.
 */
function signatureBytes(alg: string): readonly number[] | undefined {
  if (/^[RP]S(256|384|512)$/.test(alg)) return [256, 384, 512, 1024];
  return ({ ES256: [64], ES384: [96], ES512: [132] } as Record<string, number[]>)[alg];
}

/**
 * A file caught half-written (by a writer less careful than the kubelet, whose swap is atomic) can
 * hold a token cut inside its signature: it still has three segments and readable claims, but the
 * callee would refuse it. Its signature is then shorter than its algorithm's, so it is not taken
 * and the last good token is kept. Algorithms not listed here are not checked.
 */
function checkSignatureLength(token: string): void {
  const [header, , signature] = token.split('.');
  let alg: unknown;
  try {
    alg = (JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { alg?: unknown }).alg;
  } catch {
    throw new Error('the token header is not base64url JSON');
  }
  if (typeof alg !== 'string') throw new Error('the token header names no algorithm');
  const sizes = signatureBytes(alg);
  const bytes = Buffer.from(signature, 'base64url');
  if (sizes && (!sizes.includes(bytes.length) || bytes.toString('base64url') !== signature)) {
    throw new Error(`the token is incomplete: its ${alg} signature is cut short`);
  }
}

/**
 * Shared life cycle: load a first token at start-up, then load again on a timer, at the refresh
 * interval and at 80 % of the token's life, whichever comes first. A failed load keeps the last
 * good token while it is valid.
 */
abstract class RenewingTokenSource implements TokenSource {
  protected readonly logger: Logger;
  private current: { token: string; times: TokenTimes } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  protected constructor(
    readonly name: string,
    private readonly refreshIntervalMs: number,
  ) {
    this.logger = new Logger(`TokenSource(${name})`);
  }

  /** Loads a token from wherever this source gets it. */
  protected abstract load(): Promise<string>;
  /** Where the token comes from, for messages. */
  protected abstract describe(): string;

  get expiresAt(): Date | undefined {
    return this.current?.times.expiresAt;
  }

  token(): string {
    const current = this.current;
    if (!current) throw new TokenUnavailableError(`No token loaded yet from ${this.describe()}`);
    const expiresAt = current.times.expiresAt;
    if (expiresAt && expiresAt.getTime() <= Date.now()) {
      throw new TokenUnavailableError(`The token from ${this.describe()} expired at ${expiresAt.toISOString()}`);
    }
    return current.token;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.refresh();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  async refresh(): Promise<void> {
    clearTimeout(this.timer);
    try {
      const token = (await this.load()).trim();
      const times = readTokenTimes(token);
      checkSignatureLength(token);
      this.current = { token, times };
      this.schedule(this.nextLoadIn(times));
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (!this.validTokenHeld()) {
        this.schedule(RETRY_SOON_MS);
        throw new TokenUnavailableError(`Cannot load a token from ${this.describe()}: ${reason}`);
      }
      this.logger.warn(`Cannot load a token from ${this.describe()} (${reason}); keeping the last good one`);
      this.schedule(RETRY_SOON_MS);
    }
  }

  private validTokenHeld(): boolean {
    const expiresAt = this.current?.times.expiresAt;
    return this.current !== undefined && (!expiresAt || expiresAt.getTime() > Date.now());
  }

  private nextLoadIn(times: TokenTimes): number {
    const renewAt = renewalTime(times)?.getTime();
    const untilRenewal = renewAt === undefined ? Infinity : renewAt - Date.now();
    // Past 80 % the kubelet may not have rotated yet: look again soon rather than at the interval.
    const delay = untilRenewal <= 0 ? RETRY_SOON_MS : Math.min(this.refreshIntervalMs, untilRenewal);
    return Math.max(MIN_DELAY_MS, delay);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.refresh().catch((err: Error) => this.logger.warn(err.message));
    }, delayMs);
    this.timer.unref();
  }
}

/**
 * A token file projected by the kubelet. It is opened by path on every read, so the kubelet's
 * atomic `..data` symlink swap is always followed.
 */
export class ProjectedTokenFile extends RenewingTokenSource {
  readonly path: string;
  private readonly waitForFileMs: number;

  constructor(name: string, options: ResolvedProjectedTokenFile) {
    super(name, options.refreshIntervalMs);
    this.path = options.file;
    this.waitForFileMs = options.waitForFileMs;
  }

  override async start(): Promise<void> {
    const deadline = Date.now() + this.waitForFileMs;
    for (;;) {
      try {
        return await super.start();
      } catch (err) {
        if (Date.now() >= deadline) {
          throw new TokenUnavailableError(
            `${(err as Error).message}. Mount a projected serviceAccountToken volume so that the kubelet writes ` +
              `${this.path}, or configure a TokenRequest source to run outside the cluster.`,
          );
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  protected async load(): Promise<string> {
    const token = await fs.readFile(this.path, 'utf8');
    if (!token.trim()) throw new Error('the file is empty');
    return token;
  }

  protected describe(): string {
    return this.path;
  }
}

/** Tokens minted through the TokenRequest API, for a service run outside the cluster. */
export class TokenRequestSource extends RenewingTokenSource {
  private readonly path: string;

  constructor(
    name: string,
    private readonly options: ResolvedTokenRequest,
    private readonly api: KubernetesApiClient,
  ) {
    super(name, options.refreshIntervalMs);
    this.path =
      `/api/v1/namespaces/${encodeURIComponent(options.namespace)}` +
      `/serviceaccounts/${encodeURIComponent(options.serviceAccount)}/token`;
  }

  protected async load(): Promise<string> {
    const answer = await this.api.create<{ status?: { token?: string } }>(this.path, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { audiences: [this.options.audience], expirationSeconds: this.options.expirationSeconds },
    });
    const token = answer.status?.token;
    if (!token) throw new Error('the TokenRequest answer holds no token');
    return token;
  }

  protected describe(): string {
    return `TokenRequest for ${this.options.namespace}:${this.options.serviceAccount} (audience ${this.options.audience})`;
  }
}

export type ManagedTokenSource = ProjectedTokenFile | TokenRequestSource;
