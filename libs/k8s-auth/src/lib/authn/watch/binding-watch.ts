import { Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { AuthenticationUnavailableError } from '../authentication.types';
import { KubernetesApiError, type KubernetesApiClient } from '../../kube/kubernetes-api.client';
import { logSafe } from '../../observability/log-safe';
import type { PingedSession, WatchConnection } from '../../kube/watch-connection';
import {
  METADATA_ONLY_LIST,
  METADATA_ONLY_WATCH,
  type ObjectMetadata,
  type OpenWatch,
  openWatch,
  WatchError,
} from '../../kube/watch-stream';

export type WatchedResource = 'pods' | 'serviceaccounts';

export interface BindingWatchOptions {
  resource: WatchedResource;
  namespace: string;
  /** Narrows the watch, e.g. `metadata.name=api` or `spec.serviceAccountName=api`. */
  fieldSelector?: string;
  /**
   * How old the last proof that the watch delivers may be (an answered PING on its connection, or the end of the
   * watch before it was reopened) before what it holds counts as stale.
   */
  stalenessMs: number;
  /** Bound on the uids remembered as gone. */
  maxTombstones: number;
}

/** As the API server: an object whose deletion began longer ago than this is gone (go-jose's DefaultLeeway). */
const DELETION_LEEWAY_MS = 60_000;
const PAGE_SIZE = 500;
/** The server ends each watch after this long (plus up to 15 s of jitter) and a new one resumes where it ended. */
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
 * (with backoff): from the last resource version after the server ended it, by listing again after a failure or when
 * that version has expired, so an outage of the API server needs no restart of the service and what was missed
 * meanwhile is never taken on trust.
 */
export class BindingWatch {
  private readonly logger = new Logger('BindingWatch');
  private readonly collection: string;
  /** name → uid: all that is kept of an object. */
  private uids = new Map<string, string>();
  /** name → deletionTimestamp (ms since the epoch), for objects being deleted gracefully only. */
  private deleting = new Map<string, number>();
  /** uid → true for objects a lookup found gone, each kept until the token that named it expires. */
  private readonly tombstones: LRUCache<string, true> | undefined;
  private resourceVersion = '';
  /** Whether what is held is complete: listed, and no watch failed since. */
  private complete = false;
  /** The open watch, if any. */
  private current: OpenWatch | undefined;
  /** The connection of the last watch and when it ended normally, to bridge the gap until the next one opens. */
  private last: { connection: PingedSession; endedAt: number } | undefined;
  private attempt = 0;
  /** The failure last logged, so an outage is logged once, not at every retry. */
  private failure: string | undefined;
  private running = false;
  private wake: (() => void) | undefined;
  private readonly lookups = new Map<string, Promise<ObjectMetadata | undefined>>();
  private markSynced!: () => void;
  /** Resolves once the first list is held and a watch is open. */
  readonly synced = new Promise<void>((resolve) => (this.markSynced = resolve));

  constructor(
    private readonly api: KubernetesApiClient,
    private readonly connection: WatchConnection,
    private readonly options: BindingWatchOptions,
  ) {
    this.collection = `/api/v1/namespaces/${encodeURIComponent(options.namespace)}/${options.resource}`;
    if (options.maxTombstones > 0) this.tombstones = new LRUCache({ max: options.maxTombstones });
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
    this.current?.close();
    this.current = undefined;
    this.wake?.();
  }

  /**
   * Whether what is held may be trusted at `nowMs`: complete, the watch open (or ended normally within the bound and
   * being reopened), and its connection proven to deliver by a PING sent within the bound.
   */
  isFresh(nowMs: number): boolean {
    if (!this.complete) return false;
    const bound = this.options.stalenessMs;
    const open = this.current ?? (this.last && nowMs - this.last.endedAt <= bound ? this.last : undefined);
    return open !== undefined && nowMs - open.connection.provenAt() <= bound;
  }

  /** Whether the object `name` is held with `uid`, and not deleted longer ago than the API server tolerates. */
  holds(name: string, uid: string, nowMs: number): boolean {
    if (this.uids.get(name) !== uid) return false;
    const deletion = this.deleting.get(name);
    return deletion === undefined || deletion >= nowMs - DELETION_LEEWAY_MS;
  }

  /**
   * Whether `name` exists with `uid` now: held, or else read from the API server (a GET, metadata only; concurrent
   * reads share one), for an object the watch has no event of yet. An object found gone is remembered as gone until
   * `untilMs` (the expiry of the token that named it: uids never come back), so its token is refused without a read.
   * @throws AuthenticationUnavailableError when the API server cannot answer.
   */
  async exists(name: string, uid: string, nowMs: number, untilMs: number): Promise<boolean> {
    if (this.holds(name, uid, nowMs)) return true;
    if (this.tombstones?.has(uid)) return false;
    let lookup = this.lookups.get(name);
    if (!lookup) {
      lookup = this.read(name).finally(() => this.lookups.delete(name));
      this.lookups.set(name, lookup);
    }
    const found = await lookup;
    const deletion = found?.deletionTimestamp ? Date.parse(found.deletionTimestamp) : NaN;
    if (found?.uid === uid && !(deletion < nowMs - DELETION_LEEWAY_MS)) return true;
    const ttl = untilMs - Date.now();
    if (ttl >= 1) this.tombstones?.set(uid, true, { ttl });
    return false;
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
      throw new AuthenticationUnavailableError(message);
    }
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        if (!this.resourceVersion) await this.list();
        if (!this.running) return;
        await this.watch();
      } catch (err) {
        // What happened while the watch failed is not taken on trust: list again.
        this.complete = false;
        this.resourceVersion = '';
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
    this.complete = true;
  }

  /**
   * One watch from the held resource version; resolves when the server ends it normally or the version has expired
   * (410: list again), rejects when it fails.
   */
  private async watch(): Promise<void> {
    const timeoutSeconds = WATCH_TIMEOUT_S + Math.floor(Math.random() * 15);
    const query = new URLSearchParams({
      watch: '1',
      allowWatchBookmarks: 'true',
      resourceVersion: this.resourceVersion,
      timeoutSeconds: String(timeoutSeconds),
    });
    if (this.options.fieldSelector) query.set('fieldSelector', this.options.fieldSelector);
    let settle!: { resolve(): void; reject(error: Error): void };
    const ended = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    let done = false;
    // Set once the API server has accepted the watch; its handlers may run before that.
    const watch: { opened?: OpenWatch } = {};
    const finish = (error?: Error) => {
      if (done) return;
      done = true;
      watch.opened?.close();
      if (this.current === watch.opened) this.current = undefined;
      if (error) {
        settle.reject(error);
        return;
      }
      if (watch.opened) this.last = { connection: watch.opened.connection, endedAt: Date.now() };
      settle.resolve();
    };
    const opened = await openWatch(this.connection, `${this.collection}?${query}`, (timeoutSeconds + 5) * 1000, {
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
              this.complete = false;
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
    });
    watch.opened = opened;
    if (!this.running) {
      opened.close();
      return;
    }
    if (!done) this.current = opened;
    this.resumed();
    return ended;
  }

  private resumed(): void {
    this.attempt = 0;
    if (this.failure) this.logger.log(`watch of ${this.description} resumed`);
    this.failure = undefined;
    this.markSynced();
  }

  private failed(err: unknown): void {
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
