import { ApiException, type KubeConfig } from '@kubernetes/client-node';
import { promises as fs } from 'node:fs';
import { posix, join } from 'node:path';
import { mintServiceAccountToken, type ServiceAccountRef } from './cluster-objects';

/** One file of a `serviceAccountToken` projected volume. */
export interface ProjectedTokenSpec {
  /** File name inside the volume, e.g. `'secret-store-token'` (relative; `a/b` is allowed). */
  path: string;
  serviceAccount: ServiceAccountRef;
  audience: string;
  /** At least 600 (the API server's floor). @default 600 */
  expirationSeconds?: number;
  /** Binds the token to this pod object: it stops being valid once the pod is deleted. */
  pod?: { name: string; uid: string };
}

export interface TokenProjectorOptions {
  /** The volume's folder; created if missing. */
  directory: string;
  tokens: ProjectedTokenSpec[];
  /** Renew a token once this fraction of its life has passed, as the kubelet does. @default 0.8 */
  renewAtFraction?: number;
  /**
   * Called for every failed mint or write, including those that start() and rotateNow() also
   * reject with. Never given a token. @default a process warning (`process.emitWarning`)
   */
  onError?: (err: Error) => void;
  /** After a failed renewal, try again this much later. @default 10_000 */
  retryDelayMs?: number;
}

const DEFAULT_EXPIRATION_SECONDS = 600;
const MIN_EXPIRATION_SECONDS = 600;
const DEFAULT_RENEW_AT_FRACTION = 0.8;
const DEFAULT_RETRY_DELAY_MS = 10_000;
/** The kubelet renews a token at the latest 24 h after it was issued, whatever its life. */
const MAX_RENEW_AFTER_MS = 24 * 60 * 60 * 1000;
/** Keeps a tiny `renewAtFraction` from turning into a busy loop. */
const MIN_TIMER_DELAY_MS = 100;
/** Tokens due this soon are renewed together with the one that is due now: one write, not two. */
const RENEW_SLACK_MS = 1000;
/** A TokenRequest that hangs must not hold up stop() forever. */
const MINT_TIMEOUT_MS = 30_000;
const DATA_LINK = '..data';
const DATA_TMP_LINK = '..data_tmp';
/** `..2006_01_02_15_04_05.<random>`, the kubelet's name for a timestamped data folder. */
const DATA_FOLDER = /^\.\.\d{4}(_\d\d){5}\.[A-Za-z0-9]+$/;

interface CurrentToken {
  token: string;
  renewAt: number;
}

/**
 * Does for a folder what the kubelet does for a `serviceAccountToken` projected volume: mints each
 * token through the TokenRequest API, writes them atomically (AtomicWriter's layout: a timestamped
 * `..<time>.<random>` folder, a `..data` symlink to it, and each `<path>` a symlink to
 * `..data/<path>`), and renews each at `renewAtFraction` of its life. A reader that opens
 * `<dir>/<path>` by path always gets a whole token, old or new.
 *
 * Failures never crash the process and never print a token:
 * - start() is all or nothing: if any token cannot be minted, it calls onError, writes nothing
 *   (files an earlier run left in the folder stay as they were), starts no timer and rejects;
 *   call start() again to retry.
 * - a failed renewal (timer) calls onError, keeps the last files and tries again after
 *   `retryDelayMs`.
 * - rotateNow() calls onError and rejects, keeps the last files, and (if started) tries again
 *   after `retryDelayMs`.
 */
export class TokenProjector {
  private readonly directory: string;
  private readonly specs: ProjectedTokenSpec[];
  private readonly renewAtFraction: number;
  private readonly retryDelayMs: number;
  private readonly onError: (err: Error) => void;
  private readonly current = new Map<string, CurrentToken>();
  private running = false;
  /** Bumped by stop(), so a start() that was under way does not start the timers afterwards. */
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Mints and writes run one at a time, in order. Never rejects. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly kubeConfig: KubeConfig,
    options: TokenProjectorOptions,
  ) {
    if (!options.directory) throw new Error('TokenProjector: directory is required');
    if (!options.tokens?.length) throw new Error('TokenProjector: no tokens to project');
    this.directory = options.directory;
    this.specs = options.tokens.map((spec) => ({ ...spec, path: validatePath(spec.path) }));
    this.renewAtFraction = options.renewAtFraction ?? DEFAULT_RENEW_AT_FRACTION;
    this.retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    this.onError = options.onError ?? defaultOnError;
    if (!(this.renewAtFraction > 0 && this.renewAtFraction < 1)) {
      throw new Error(`TokenProjector: renewAtFraction must be between 0 and 1, got ${this.renewAtFraction}`);
    }
    if (!(this.retryDelayMs >= 0)) throw new Error(`TokenProjector: bad retryDelayMs ${this.retryDelayMs}`);
    const topLevel = new Set<string>();
    for (const spec of this.specs) {
      const expiration = spec.expirationSeconds ?? DEFAULT_EXPIRATION_SECONDS;
      if (!Number.isInteger(expiration) || expiration < MIN_EXPIRATION_SECONDS) {
        throw new Error(
          `TokenProjector: expirationSeconds of "${spec.path}" must be an integer >= ${MIN_EXPIRATION_SECONDS}`,
        );
      }
      const first = spec.path.split('/')[0];
      if (topLevel.has(first)) throw new Error(`TokenProjector: "${spec.path}" clashes with another path`);
      topLevel.add(first);
    }
  }

  /** Mints every token and writes the volume once, then keeps renewing the tokens. */
  async start(): Promise<void> {
    if (this.running) throw new Error('TokenProjector: already started');
    const generation = this.generation;
    try {
      await this.serialize(() => this.refresh(true));
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`TokenProjector: could not start on ${this.directory}: ${reason}`, { cause: err });
    }
    if (generation !== this.generation) return; // stop() was called meanwhile
    this.running = true;
    this.schedule();
  }

  /** Mints fresh tokens for every path and swaps them in now. */
  async rotateNow(): Promise<void> {
    await this.serialize(() => this.refresh(true));
  }

  /** Stops the timers and waits for a mint or write under way; leaves the files. */
  async stop(): Promise<void> {
    this.running = false;
    this.generation++;
    this.clearTimer();
    await this.queue;
  }

  private serialize(work: () => Promise<void>): Promise<void> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Mints the tokens that are due (all if `all`), writes the volume and schedules the next run. */
  private async refresh(all: boolean): Promise<void> {
    const now = Date.now();
    const due = this.specs.filter((spec) => all || (this.current.get(spec.path)?.renewAt ?? 0) <= now + RENEW_SLACK_MS);
    try {
      const settled = await Promise.allSettled(due.map((spec) => this.mint(spec)));
      const errors = settled.flatMap((s) => (s.status === 'rejected' ? [toError(s.reason)] : []));
      if (errors.length > 0) {
        throw errors.length === 1 ? errors[0] : new AggregateError(errors, errors.map((e) => e.message).join('; '));
      }
      const minted = new Map(
        due.map((spec, i) => [spec.path, (settled[i] as PromiseFulfilledResult<CurrentToken>).value]),
      );
      const files = new Map<string, string>();
      for (const spec of this.specs) {
        const token = minted.get(spec.path) ?? this.current.get(spec.path);
        if (!token) throw new Error(`TokenProjector: no token for "${spec.path}"`);
        files.set(spec.path, token.token);
      }
      await writeAtomically(this.directory, files);
      for (const [path, token] of minted) this.current.set(path, token);
    } catch (err) {
      const error = toError(err);
      if (error instanceof AggregateError) error.errors.forEach((e) => this.report(toError(e)));
      else this.report(error);
      this.schedule(this.retryDelayMs);
      throw error;
    }
    this.schedule();
  }

  private async mint(spec: ProjectedTokenSpec): Promise<CurrentToken> {
    const expirationSeconds = spec.expirationSeconds ?? DEFAULT_EXPIRATION_SECONDS;
    const account = `${spec.serviceAccount.namespace}/${spec.serviceAccount.name}`;
    const requestedAt = Date.now();
    try {
      const { token, expiresAt } = await withTimeout(
        mintServiceAccountToken(this.kubeConfig, spec.serviceAccount, {
          audiences: [spec.audience],
          expirationSeconds,
          boundObject: spec.pod && { kind: 'Pod', name: spec.pod.name, uid: spec.pod.uid },
        }),
        MINT_TIMEOUT_MS,
      );
      // The life the API server granted, measured on this clock from when the request was sent.
      const granted = expiresAt.getTime() - requestedAt;
      const lifeMs = granted > 0 ? granted : expirationSeconds * 1000;
      const renewAt = requestedAt + Math.min(lifeMs * this.renewAtFraction, MAX_RENEW_AFTER_MS);
      return { token, renewAt };
    } catch (err) {
      throw new Error(
        `TokenProjector: cannot mint "${spec.path}" for service account ${account}` +
          `${spec.pod ? ` bound to pod ${spec.pod.name}` : ''} (audience ${spec.audience}): ${describe(err)}`,
        { cause: err },
      );
    }
  }

  /** Sets the timer for the next renewal: after `delayMs`, or when the first token is due. */
  private schedule(delayMs?: number): void {
    this.clearTimer();
    if (!this.running) return;
    let delay = delayMs;
    if (delay === undefined) {
      const next = Math.min(...[...this.current.values()].map((t) => t.renewAt));
      delay = next - Date.now();
    }
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        // refresh() has reported any failure and scheduled a retry.
        this.serialize(() => this.refresh(false)).catch(() => undefined);
      },
      Math.max(MIN_TIMER_DELAY_MS, delay),
    );
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private report(err: Error): void {
    try {
      this.onError(err);
    } catch {
      // A failing onError must not stop the renewals.
    }
  }
}

/**
 * Writes `files` (path → content) into `directory` the way the kubelet's AtomicWriter does: into
 * a new timestamped folder, then `..data_tmp` → that folder, renamed over `..data` (atomic), then
 * the user-visible symlinks `<first path part>` → `..data/<first path part>` (made once), then the
 * old folder is removed.
 */
async function writeAtomically(directory: string, files: Map<string, string>): Promise<void> {
  await fs.mkdir(directory, { recursive: true, mode: 0o755 });
  const dataLink = join(directory, DATA_LINK);
  const oldFolder = await fs.readlink(dataLink).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });

  const stamp = new Date()
    .toISOString()
    .replace(/[-T:]/g, '_')
    .replace(/\.\d+Z$/, '');
  const newFolder = await fs.mkdtemp(join(directory, `..${stamp}.`));
  try {
    await fs.chmod(newFolder, 0o755);
    for (const [path, content] of files) {
      const file = join(newFolder, path);
      await fs.mkdir(join(file, '..'), { recursive: true, mode: 0o755 });
      await fs.writeFile(file, content, { mode: 0o644 });
      await fs.chmod(file, 0o644);
    }
    const tmpLink = join(directory, DATA_TMP_LINK);
    await fs.rm(tmpLink, { force: true });
    await fs.symlink(posix.basename(newFolder), tmpLink);
    await fs.rename(tmpLink, dataLink);
  } catch (err) {
    await fs.rm(newFolder, { recursive: true, force: true });
    throw err;
  }

  const visible = new Set([...files.keys()].map((path) => path.split('/')[0]));
  for (const name of visible) await ensureVisibleLink(directory, name);
  if (oldFolder && oldFolder !== posix.basename(newFolder)) {
    // Paths the old payload had and this one does not: remove their links, as the kubelet does.
    const oldNames = await fs.readdir(join(directory, oldFolder)).catch(() => [] as string[]);
    for (const name of oldNames) {
      if (visible.has(name)) continue;
      const stat = await fs.lstat(join(directory, name)).catch(() => undefined);
      if (stat?.isSymbolicLink()) await fs.rm(join(directory, name), { force: true });
    }
  }
  // The old folder, and any a crashed writer left behind.
  for (const name of await fs.readdir(directory)) {
    if (DATA_FOLDER.test(name) && name !== posix.basename(newFolder)) {
      await fs.rm(join(directory, name), { recursive: true, force: true });
    }
  }
}

async function ensureVisibleLink(directory: string, name: string): Promise<void> {
  const link = join(directory, name);
  const target = posix.join(DATA_LINK, name);
  const stat = await fs.lstat(link).catch(() => undefined);
  if (stat?.isSymbolicLink() && (await fs.readlink(link)) === target) return;
  if (stat && !stat.isSymbolicLink()) {
    throw new Error(`TokenProjector: ${link} exists and is not a symlink into ${DATA_LINK}; not replacing it`);
  }
  if (stat) await fs.rm(link, { force: true });
  await fs.symlink(target, link);
}

/** The kubelet's rules for a path in a volume: relative, no empty, `.` or `..` part, not starting with `..`. */
function validatePath(path: string): string {
  const parts = typeof path === 'string' ? path.split('/') : [''];
  if (parts.some((part) => part === '' || part === '.' || part === '..') || path.startsWith('..')) {
    throw new Error(`TokenProjector: invalid path "${path}" (must be relative, without empty, "." or ".." parts)`);
  }
  return path;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A short reason: for an API error its status message, not the whole response with headers. */
function describe(err: unknown): string {
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? safeJson(err.body) : err.body;
    const message = body && typeof body === 'object' && 'message' in body ? String(body.message) : undefined;
    return `HTTP ${err.code}${message ? `: ${message}` : ''}`;
  }
  return toError(err).message;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function defaultOnError(err: Error): void {
  process.emitWarning(err.message, { type: 'TokenProjectorWarning' });
}
