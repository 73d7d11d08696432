import type { KubeConfig } from '@kubernetes/client-node';
import { Logger } from '@nestjs/common';
import type { CallerIdentity } from './authentication.types';
import type { KubernetesApiClient } from './kubernetes-api.client';
import { ObjectUidWatch } from './object-uid-watch';

/** What the routes' allowlists name: whole namespaces, and `namespace:name` service accounts. */
export interface Allowlisted {
  namespaces: ReadonlySet<string>;
  serviceAccounts: ReadonlySet<string>;
}

/** The objects a token is bound to, as its verified claims name them. */
type Binding = Pick<CallerIdentity, 'serviceAccount' | 'uid' | 'podName' | 'podUid'>;

/** The two watches that cover a caller: its service account (or every one of its namespace) and their pods. */
export class CallerScope {
  constructor(
    readonly serviceAccounts: ObjectUidWatch,
    readonly pods: ObjectUidWatch,
  ) {}

  isFresh(nowMs: number): boolean {
    return this.serviceAccounts.isFresh(nowMs) && this.pods.isFresh(nowMs);
  }

  /** From the watches alone: the service account, and the pod if the token is bound to one, exist with its uids. */
  holds(binding: Binding, nowMs: number): boolean {
    return (
      this.serviceAccounts.holds(binding.serviceAccount, binding.uid ?? '', nowMs) &&
      (binding.podName === undefined || this.pods.holds(binding.podName, binding.podUid ?? '', nowMs))
    );
  }

  /**
   * As {@link holds}, asking the API server for each object the watches lack: the token may be minted for an object
   * created a moment ago, whose event is still on its way (the API server's own lister-then-GET).
   * @throws ReviewUnavailableError when the API server cannot answer.
   */
  async exists(binding: Binding, nowMs: number): Promise<boolean> {
    const uid = binding.uid ?? '';
    const [serviceAccount, pod] = await Promise.all([
      this.serviceAccounts.holds(binding.serviceAccount, uid, nowMs) ||
        this.serviceAccounts.exists(binding.serviceAccount, uid, nowMs),
      binding.podName === undefined ||
        this.pods.holds(binding.podName, binding.podUid ?? '', nowMs) ||
        this.pods.exists(binding.podName, binding.podUid ?? '', nowMs),
    ]);
    return serviceAccount && pod;
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
export class BoundObjectWatches {
  private readonly logger = new Logger('BindingWatch');
  /** By namespace, or by `namespace:name` (namespaces have no colon). */
  private readonly scopes = new Map<string, CallerScope>();
  private stopped = false;
  private markStarted!: () => void;
  private readonly started = new Promise<void>((resolve) => (this.markStarted = resolve));

  constructor(
    private readonly api: KubernetesApiClient,
    private readonly stalenessMs: number,
  ) {}

  start(allowlisted: Allowlisted): void {
    if (this.stopped || this.scopes.size > 0) return;
    let config: KubeConfig;
    try {
      config = this.api.kubeConfig();
    } catch (err) {
      this.logger.error(`Cannot watch callers' objects: ${(err as Error).message}; tokens go to TokenReview`);
      this.markStarted();
      return;
    }
    const watch = (resource: 'pods' | 'serviceaccounts', namespace: string, fieldSelector?: string) =>
      new ObjectUidWatch(this.api, config, { resource, namespace, fieldSelector, stalenessMs: this.stalenessMs });
    for (const namespace of allowlisted.namespaces) {
      this.scopes.set(namespace, new CallerScope(watch('serviceaccounts', namespace), watch('pods', namespace)));
    }
    for (const entry of allowlisted.serviceAccounts) {
      const [namespace, name] = entry.split(':');
      if (this.scopes.has(namespace)) continue;
      this.scopes.set(
        entry,
        new CallerScope(
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
  scopeOf(namespace: string, name: string): CallerScope | undefined {
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
  }
}
