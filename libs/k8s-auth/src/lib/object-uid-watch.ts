import type { KubeConfig } from '@kubernetes/client-node';
import { Logger } from '@nestjs/common';
import { ReviewUnavailableError } from './authentication.types';
import { KubernetesApiError, type KubernetesApiClient } from './kubernetes-api.client';
import { logSafe } from './log-safe';
import { METADATA_ONLY_LIST, METADATA_ONLY_WATCH, type ObjectMetadata, openWatch, WatchError } from './watch-stream';

export type WatchedResource = 'pods' | 'serviceaccounts';

export interface ObjectUidWatchOptions {
  resource: WatchedResource;
  namespace: string;
  /** Narrows the watch, e.g. `metadata.name=api` or `spec.serviceAccountName=api`. */
  fieldSelector?: string;
  /** How long the watch may be broken before what it holds counts as stale. */
  stalenessMs: number;
}

/** As the API server: an object whose deletion began longer ago than this is gone (go-jose's DefaultLeeway). */
const DELETION_LEEWAY_MS = 60_000;
const PAGE_SIZE = 500;
/**
 * The server ends each watch after this long (plus up to 15 s of jitter) and a new one resumes where it ended, so a
 * connection that died silently is dropped within this bound plus 5 s.
 */
const WATCH_TIMEOUT_S = 30;
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 3_000;

interface ObjectList {
  metadata?: { continue?: string; resourceVersion?: string };
  items?: Array<{ metadata?: ObjectMetadata }>;
}

/**
 * List, then watch, one kind of object in one namespace (metadata only), keeping nothing but each object's name and
 * uid, and the deletion time of the few being deleted gracefully. The watch is reopened after every end or failure
 * (with backoff), from the last resource version, or by listing again when that has expired: an outage of the API
 * server needs no restart of the service.
 */
export class ObjectUidWatch {
  private readonly logger = new Logger('BindingWatch');
  private readonly collection: string;
  /** name → uid: all that is kept of an object. */
  private uids = new Map<string, string>();
  /** name → deletionTimestamp (ms since the epoch), for objects being deleted gracefully only. */
  private deleting = new Map<string, number>();
  private resourceVersion = '';
  private listed = false;
  /** When the watch last stopped delivering events; undefined while one is open. */
  private brokenSince: number | undefined;
  private attempt = 0;
  /** The failure last logged, so an outage is logged once, not at every retry. */
  private failure: string | undefined;
  private running = false;
  private closeWatch: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private readonly lookups = new Map<string, Promise<ObjectMetadata | undefined>>();
  private markSynced!: () => void;
  /** Resolves once the first list is held and a watch is open. */
  readonly synced = new Promise<void>((resolve) => (this.markSynced = resolve));

  constructor(
    private readonly api: KubernetesApiClient,
    private readonly config: KubeConfig,
    private readonly options: ObjectUidWatchOptions,
  ) {
    this.collection = `/api/v1/namespaces/${encodeURIComponent(options.namespace)}/${options.resource}`;
  }

  /** e.g. `pods in api (spec.serviceAccountName=api)`, for logs. */
  get description(): string {
    const { resource, namespace, fieldSelector } = this.options;
    return `${resource} in ${namespace}${fieldSelector ? ` (${fieldSelector})` : ''}`;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.run();
  }

  stop(): void {
    this.running = false;
    this.closeWatch?.();
    this.wake?.();
  }

  /** Whether what is held may be trusted: listed once, and the watch open or broken for no longer than the bound. */
  isFresh(nowMs: number): boolean {
    return this.listed && (this.brokenSince === undefined || nowMs - this.brokenSince <= this.options.stalenessMs);
  }

  /** Whether the object `name` is held with `uid`, and not deleted longer ago than the API server tolerates. */
  holds(name: string, uid: string, nowMs: number): boolean {
    if (this.uids.get(name) !== uid) return false;
    const deletion = this.deleting.get(name);
    return deletion === undefined || deletion >= nowMs - DELETION_LEEWAY_MS;
  }

  /**
   * Asks the API server whether `name` exists with `uid` now (a GET, metadata only; concurrent asks share one):
   * for an object the watch has no event of yet.
   * @throws ReviewUnavailableError when the API server cannot answer.
   */
  async exists(name: string, uid: string, nowMs: number): Promise<boolean> {
    let lookup = this.lookups.get(name);
    if (!lookup) {
      lookup = this.read(name).finally(() => this.lookups.delete(name));
      this.lookups.set(name, lookup);
    }
    const found = await lookup;
    if (found?.uid !== uid) return false;
    const deletion = found.deletionTimestamp ? Date.parse(found.deletionTimestamp) : NaN;
    return !(deletion < nowMs - DELETION_LEEWAY_MS);
  }

  /** What is kept: name → uid (read-only view, for tests and measurements). */
  objects(): ReadonlyMap<string, string> {
    return this.uids;
  }

  private async read(name: string): Promise<ObjectMetadata | undefined> {
    try {
      const object = await this.api.get<{ metadata?: ObjectMetadata }>(
        `${this.collection}/${encodeURIComponent(name)}`,
        METADATA_ONLY_WATCH,
      );
      return object.metadata;
    } catch (err) {
      if (err instanceof KubernetesApiError && err.statusCode === 404) return undefined;
      const message = `Cannot read ${this.options.resource} ${this.options.namespace}/${logSafe(name)}: ${(err as Error).message}`;
      if (err instanceof KubernetesApiError && err.failure === 'forbidden') this.logger.error(this.rbacHint(message));
      else this.logger.warn(message);
      throw new ReviewUnavailableError(message);
    }
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        if (!this.resourceVersion) await this.list();
        if (!this.running) return;
        await this.watch();
      } catch (err) {
        this.failed(err);
        const backoff = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, backoff);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  /** Lists every page, then swaps what is held for it: objects deleted meanwhile disappear. */
  private async list(): Promise<void> {
    const uids = new Map<string, string>();
    const deleting = new Map<string, number>();
    let next = '';
    let resourceVersion = '';
    do {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (this.options.fieldSelector) query.set('fieldSelector', this.options.fieldSelector);
      if (next) query.set('continue', next);
      const page = await this.api.get<ObjectList>(`${this.collection}?${query}`, METADATA_ONLY_LIST);
      for (const item of page.items ?? []) keep(uids, deleting, item.metadata);
      next = page.metadata?.continue ?? '';
      resourceVersion = page.metadata?.resourceVersion ?? '';
    } while (next && this.running);
    this.uids = uids;
    this.deleting = deleting;
    this.resourceVersion = resourceVersion;
    this.listed = true;
  }

  /** One watch from the held resource version; resolves when it ends normally or has expired (410: list again). */
  private watch(): Promise<void> {
    const timeoutSeconds = WATCH_TIMEOUT_S + Math.floor(Math.random() * 15);
    const query = new URLSearchParams({
      watch: '1',
      allowWatchBookmarks: 'true',
      resourceVersion: this.resourceVersion,
      timeoutSeconds: String(timeoutSeconds),
    });
    if (this.options.fieldSelector) query.set('fieldSelector', this.options.fieldSelector);
    return new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (error?: Error) => {
        if (done) return;
        done = true;
        this.closeWatch?.();
        this.closeWatch = undefined;
        this.brokenSince ??= Date.now();
        if (error) reject(error);
        else resolve();
      };
      openWatch(this.config, `${this.collection}?${query}`, (timeoutSeconds + 5) * 1000, {
        onOpen: () => this.opened(),
        onEvent: (event) => {
          const metadata = event.object?.metadata;
          switch (event.type) {
            case 'ADDED':
            case 'MODIFIED':
              keep(this.uids, this.deleting, metadata);
              break;
            case 'DELETED':
              if (metadata?.name && this.uids.get(metadata.name) === metadata.uid) {
                this.uids.delete(metadata.name);
                this.deleting.delete(metadata.name);
              }
              break;
            case 'ERROR':
              if (event.object?.code === 410) {
                this.resourceVersion = '';
                finish();
              } else {
                finish(new WatchError(`watch error: ${event.object?.message ?? 'unknown'}`, event.object?.code));
              }
              return;
          }
          if (metadata?.resourceVersion) this.resourceVersion = metadata.resourceVersion;
        },
        onEnd: (error) => finish(error),
      }).then(
        (close) => {
          if (this.running) this.closeWatch = close;
          else close();
        },
        (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
      );
    });
  }

  private opened(): void {
    this.brokenSince = undefined;
    this.attempt = 0;
    if (this.failure) this.logger.log(`watch of ${this.description} resumed`);
    this.failure = undefined;
    this.markSynced();
  }

  private failed(err: unknown): void {
    this.brokenSince ??= Date.now();
    const message = err instanceof Error ? err.message : String(err);
    if (message === this.failure) return;
    this.failure = message;
    const forbidden =
      (err instanceof KubernetesApiError && err.failure === 'forbidden') ||
      (err instanceof WatchError && (err.statusCode === 401 || err.statusCode === 403));
    const text = `Cannot watch ${this.description} (${message}); retrying`;
    if (forbidden) this.logger.error(`${this.rbacHint(text)} Until then, its callers' tokens go to TokenReview.`);
    else this.logger.warn(text);
  }

  private rbacHint(message: string): string {
    return (
      `${message}. This service's account needs get, list and watch on ${this.options.resource} in namespace ` +
      `${this.options.namespace}: a Role and a RoleBinding there.`
    );
  }
}

function keep(uids: Map<string, string>, deleting: Map<string, number>, metadata: ObjectMetadata | undefined): void {
  if (!metadata?.name || !metadata.uid) return;
  uids.set(metadata.name, metadata.uid);
  const deletion = metadata.deletionTimestamp ? Date.parse(metadata.deletionTimestamp) : NaN;
  if (Number.isFinite(deletion)) deleting.set(metadata.name, deletion);
  else deleting.delete(metadata.name);
}
