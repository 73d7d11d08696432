import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
  loadAllYaml,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest, type RequestOptions } from 'node:https';

/** A service account, as `namespace` and `name`. */
export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

export interface MintTokenOptions {
  /** @default the API server's own audience */
  audiences?: string[];
  /** At least 600 (the API server's floor). @default 3600 */
  expirationSeconds?: number;
  /** Binds the token to an object: it stops being valid once that object is deleted. */
  boundObject?: { kind: 'Pod' | 'Secret' | 'Node'; name: string; uid: string };
}

export interface MintedToken {
  token: string;
  expiresAt: Date;
}

/** Mints a token for a service account through the TokenRequest API, as the kubelet does. */
export async function mintServiceAccountToken(
  kubeConfig: KubeConfig,
  account: ServiceAccountRef,
  options: MintTokenOptions = {},
): Promise<MintedToken> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const bound = options.boundObject;
  const response = await core.createNamespacedServiceAccountToken({
    name: account.name,
    namespace: account.namespace,
    body: {
      spec: {
        audiences: options.audiences ?? [],
        expirationSeconds: options.expirationSeconds ?? 3600,
        boundObjectRef: bound && { apiVersion: 'v1', kind: bound.kind, name: bound.name, uid: bound.uid },
      },
    },
  });
  const token = response.status?.token;
  if (!token) throw new Error(`TokenRequest for ${account.namespace}/${account.name} returned no token`);
  return { token, expiresAt: new Date(response.status?.expirationTimestamp ?? 0) };
}

/** Creates the namespace (if missing) and the service account (if missing). */
export async function createServiceAccount(
  kubeConfig: KubeConfig,
  account: ServiceAccountRef,
): Promise<{ uid: string }> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  await ignoreConflict(() => core.createNamespace({ body: { metadata: { name: account.namespace } } }));
  const created = await ignoreConflict(() =>
    core.createNamespacedServiceAccount({ namespace: account.namespace, body: { metadata: { name: account.name } } }),
  );
  const uid =
    created?.metadata?.uid ??
    (await core.readNamespacedServiceAccount({ name: account.name, namespace: account.namespace })).metadata?.uid;
  return { uid: uid ?? '' };
}

/**
 * Creates a pod object that runs as `account`, for binding tokens to it. No kubelet runs it: the
 * object is what the API server checks when it reviews a pod-bound token.
 */
export async function createPod(
  kubeConfig: KubeConfig,
  account: ServiceAccountRef,
  podName: string,
): Promise<{ name: string; uid: string }> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const pod = await core.createNamespacedPod({
    namespace: account.namespace,
    body: {
      metadata: { name: podName },
      spec: {
        serviceAccountName: account.name,
        automountServiceAccountToken: false,
        containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }],
      },
    },
  });
  return { name: podName, uid: pod.metadata?.uid ?? '' };
}

/** Deletes a pod object at once (no kubelet is there to wait for). */
export async function deletePod(kubeConfig: KubeConfig, namespace: string, name: string): Promise<void> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 });
}

/** Binds a cluster role (e.g. `system:auth-delegator`) to a service account. */
export async function bindClusterRole(
  kubeConfig: KubeConfig,
  account: ServiceAccountRef,
  clusterRole: string,
): Promise<void> {
  const rbac = kubeConfig.makeApiClient(RbacAuthorizationV1Api);
  await ignoreConflict(() =>
    rbac.createClusterRoleBinding({
      body: {
        metadata: { name: `${account.namespace}-${account.name}-${clusterRole.replace(/:/g, '-')}` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole },
        subjects: [{ kind: 'ServiceAccount', namespace: account.namespace, name: account.name }],
      },
    }),
  );
}

/**
 * A kubeconfig that acts as `account`, with a token minted for the API server: how a service
 * outside the cluster (`nx serve`) or a test talks to Kubernetes as that service account.
 */
export async function kubeConfigFor(
  kubeConfig: KubeConfig,
  account: ServiceAccountRef,
  expirationSeconds = 3600,
): Promise<KubeConfig> {
  const { token } = await mintServiceAccountToken(kubeConfig, account, { expirationSeconds });
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('The kubeconfig has no current cluster');
  const result = new KubeConfig();
  const user = `${account.namespace}:${account.name}`;
  result.loadFromOptions({
    clusters: [cluster],
    users: [{ name: user, token }],
    contexts: [{ name: user, cluster: cluster.name, user }],
    currentContext: user,
  });
  return result;
}

async function ignoreConflict<T>(create: () => Promise<T>): Promise<T | undefined> {
  try {
    return await create();
  } catch (err) {
    if (err instanceof ApiException && err.code === 409) return undefined;
    throw err;
  }
}

/**
 * How many requests for `resource` the API server has served, from its own `apiserver_request_total`
 * metric: proof of how often a client really called it (e.g. `tokenreviews`).
 */
export async function countApiServerRequests(kubeConfig: KubeConfig, resource: string): Promise<number> {
  const options: RequestOptions = {};
  await kubeConfig.applyToHTTPSOptions(options);
  const server = kubeConfig.getCurrentCluster()?.server ?? '';
  const text = await new Promise<string>((resolve, reject) => {
    const req = httpsRequest(new URL('/metrics', server), { ...options, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics: HTTP ${res.statusCode}`)),
      );
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('/metrics timed out')));
    req.end();
  });
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('apiserver_request_total{') && line.includes(`resource="${resource}"`)) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

/**
 * What {@link createClusterObjects} takes from manifests: everything around the workloads, which tests run as
 * processes.
 */
const CLUSTER_KINDS = new Set([
  'Namespace',
  'ServiceAccount',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
]);

/**
 * Creates the namespaces, service accounts and RBAC objects of the YAML manifests in `dir` (e.g. a kustomize base;
 * `kustomization.yaml` itself is skipped), namespaces first. Objects that exist already are left as they are.
 */
export async function createClusterObjects(kubeConfig: KubeConfig, dir: string): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kubeConfig);
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  const objects: KubernetesObject[] = [];
  for (const file of files.sort()) {
    objects.push(...(loadAllYaml(await fs.readFile(join(dir, file), 'utf8')) as KubernetesObject[]));
  }
  const ordered = objects
    .filter((o) => CLUSTER_KINDS.has(o.kind ?? ''))
    .sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'));
  for (const object of ordered) {
    try {
      await api.create(object);
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 409)) throw err;
    }
  }
}
