import { Logger } from '@nestjs/common';
import type { TokenBindings } from '../authentication.types';
import type { KubernetesApiClient } from '../../kube/kubernetes-api.client';
import { BindingWatch } from './binding-watch';
import { WatchConnection } from '../../kube/watch-connection';

/** What the routes' allowlists name: whole namespaces, and `namespace:name` service accounts. */
export interface Allowlisted {
  namespaces: ReadonlySet<string>;
  serviceAccounts: ReadonlySet<string>;
}

/** Where the allowlists come from: complete once every route has been checked, as the app starts (RoutePolicies). */
export interface AllowlistedCallers {
  readonly allChecked: Promise<void>;
  allowlisted(): Allowlisted;
}

/** The two watches that cover a caller: its service account (or every one of its namespace) and their pods. */
export class BindingWatchScope {
  constructor(
    readonly serviceAccounts: BindingWatch,
    readonly pods: BindingWatch,
  ) {}

  isFresh(nowMs: number): boolean {
    return this.serviceAccounts.isFresh(nowMs) && this.pods.isFresh(nowMs);
  }

  /**
   * Whether the service account, and the pod if the token is bound to one, exist with the token's uids: from the
   * watches, else from the API server for an object the watches lack (it may be a moment old and its event still on
   * its way, as the API server itself falls back from its informers to a read). `untilMs`: the token's expiry.
   * @throws AuthenticationUnavailableError when the API server cannot answer.
   */
  async exists(bindings: TokenBindings, nowMs: number, untilMs: number): Promise<boolean> {
    const { serviceAccount, pod } = bindings;
    const [account, bound] = await Promise.all([
      this.serviceAccounts.exists(serviceAccount.name, serviceAccount.uid, nowMs, untilMs),
      pod === undefined || this.pods.exists(pod.name, pod.uid, nowMs, untilMs),
    ]);
    return account && bound;
  }

  get synced(): Promise<unknown> {
    return Promise.all([this.serviceAccounts.synced, this.pods.synced]);
  }
}

/**
 * The watches of every caller the allowlists name, with this service's own credentials: per allowlisted namespace,
 * its service accounts and pods; per allowlisted service account outside those, that one service account
 * (`metadata.name`) and its pods (`spec.serviceAccountName`). A caller they do not cover has no scope.
 */
export class BindingWatches {
  private readonly logger = new Logger('BindingWatch');
  /** By namespace, or by `namespace:name` (namespaces have no colon). */
  private readonly scopes = new Map<string, BindingWatchScope>();
  private stopped = false;
  private markStarted!: () => void;
  private readonly started = new Promise<void>((resolve) => (this.markStarted = resolve));

  private connection: WatchConnection | undefined;

  /**
   * `stalenessMs`: how old the last proof that a watch delivers may be; the connection is PINGed four times as often.
   * `maxTombstones`: per watch, how many uids found gone are remembered.
   */
  constructor(
    private readonly api: KubernetesApiClient,
    private readonly options: { stalenessMs: number; maxTombstones: number },
  ) {}

  start(allowlisted: Allowlisted): void {
    if (this.stopped || this.scopes.size > 0) return;
    let connection: WatchConnection;
    try {
      connection = new WatchConnection(this.api.kubeConfig(), Math.max(1, this.options.stalenessMs / 4));
    } catch (err) {
      this.logger.error(`Cannot watch callers' objects: ${(err as Error).message}; tokens go to TokenReview`);
      this.markStarted();
      return;
    }
    const unsupported = connection.unsupportedReason();
    if (unsupported) {
      // Nothing would prove such a watch alive: a silent partition would go unnoticed.
      this.logger.error(
        `Cannot watch callers' objects: ${unsupported}, and watches need HTTP/2 to the API server (its PINGs prove ` +
          "them alive). Every token goes to TokenReview: use verification 'local+review' for this server.",
      );
      this.markStarted();
      return;
    }
    this.connection = connection;
    const watch = (resource: 'pods' | 'serviceaccounts', namespace: string, fieldSelector?: string) =>
      new BindingWatch(this.api, connection, { resource, namespace, fieldSelector, ...this.options });
    for (const namespace of allowlisted.namespaces) {
      this.scopes.set(namespace, new BindingWatchScope(watch('serviceaccounts', namespace), watch('pods', namespace)));
    }
    for (const entry of allowlisted.serviceAccounts) {
      const [namespace, name] = entry.split(':');
      if (this.scopes.has(namespace)) continue;
      this.scopes.set(
        entry,
        new BindingWatchScope(
          watch('serviceaccounts', namespace, `metadata.name=${name}`),
          watch('pods', namespace, `spec.serviceAccountName=${name}`),
        ),
      );
    }
    for (const scope of this.scopes.values()) {
      scope.serviceAccounts.start();
      scope.pods.start();
    }
    this.logger.log(`watching the service accounts and pods of ${[...this.scopes.keys()].join(', ') || 'no caller'}`);
    this.markStarted();
  }

  /** The scope that covers the service account `namespace:name`, if any. */
  scopeOf(namespace: string, name: string): BindingWatchScope | undefined {
    return this.scopes.get(namespace) ?? this.scopes.get(`${namespace}:${name}`);
  }

  /** Resolves once the watches have started and each holds its first list with a watch open. */
  async whenSynced(): Promise<void> {
    await this.started;
    await Promise.all([...this.scopes.values()].map((scope) => scope.synced));
  }

  stop(): void {
    this.stopped = true;
    for (const scope of this.scopes.values()) {
      scope.serviceAccounts.stop();
      scope.pods.stop();
    }
    this.connection?.close();
  }
}
