import { loadAllYaml, type V1Deployment, type V1Probe } from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One file of a projected volume: a ServiceAccount token, the cluster's CA, or the pod's namespace. */
export type ProjectedFile =
  | { kind: 'token'; path: string; audience?: string; expirationSeconds: number }
  | { kind: 'ca'; path: string }
  | { kind: 'namespace'; path: string };

/** What the kubelet mounts for one volume, as the test can give it to `docker run`. */
export type MountPlan =
  | { kind: 'tmpfs'; mountPath: string; sizeBytes?: number }
  | { kind: 'projected'; volume: string; mountPath: string; files: ProjectedFile[] };

/** A Deployment's single container, as the manifests in `k8s/base` run it. */
export interface PodPlan {
  namespace: string;
  serviceAccount: string;
  image: string;
  env: Record<string, string>;
  user: string;
  readOnlyRoot: boolean;
  dropCapabilities: string[];
  noNewPrivileges: boolean;
  memoryLimit?: string;
  port: number;
  liveness: string;
  readiness: string;
  /** The pod's terminationGracePeriodSeconds: how long SIGTERM may take before SIGKILL. */
  graceSeconds: number;
  mounts: MountPlan[];
}

/** What a pod gets from automountServiceAccountToken: true. */
const AUTOMOUNT: MountPlan = {
  kind: 'projected',
  volume: 'kube-api-access',
  mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
  files: [
    { kind: 'token', path: 'token', expirationSeconds: 3607 },
    { kind: 'ca', path: 'ca.crt' },
    { kind: 'namespace', path: 'namespace' },
  ],
};

/** The Deployments of the manifests in `dir`, by namespace. */
export function readPodPlans(dir: string): Map<string, PodPlan> {
  const plans = new Map<string, PodPlan>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')) {
    for (const object of loadAllYaml(readFileSync(join(dir, file), 'utf8')) as V1Deployment[]) {
      if (object.kind !== 'Deployment') continue;
      const plan = podPlan(object);
      plans.set(plan.namespace, plan);
    }
  }
  return plans;
}

function podPlan(deployment: V1Deployment): PodPlan {
  const namespace = deployment.metadata?.namespace ?? 'default';
  const where = `Deployment ${namespace}/${deployment.metadata?.name}`;
  const pod = deployment.spec?.template.spec;
  const containers = pod?.containers ?? [];
  if (!pod || containers.length !== 1) throw new Error(`${where}: expected one container`);
  const [container] = containers;
  const security = { ...pod.securityContext, ...container.securityContext };
  if (security.runAsUser === undefined) throw new Error(`${where}: no runAsUser`);
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    if (variable.value === undefined) throw new Error(`${where}: env ${variable.name} is not a plain value`);
    env[variable.name] = variable.value;
  }
  const port = container.ports?.[0];
  if (!port) throw new Error(`${where}: no container port`);
  const probePath = (probe: V1Probe | undefined, which: string) => {
    const path = probe?.httpGet?.path;
    if (!path || (probe?.httpGet?.port !== port.name && probe?.httpGet?.port !== port.containerPort)) {
      throw new Error(`${where}: the ${which} probe is not an HTTP GET on port ${port.name}`);
    }
    return path;
  };

  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const mounts: MountPlan[] = (container.volumeMounts ?? []).map((mount) => {
    const volume = volumes.get(mount.name);
    if (volume?.emptyDir) {
      if (volume.emptyDir.medium === 'Memory' || mount.readOnly) throw new Error(`${where}: unexpected emptyDir`);
      return { kind: 'tmpfs', mountPath: mount.mountPath, sizeBytes: quantityBytes(volume.emptyDir.sizeLimit) };
    }
    if (volume?.projected && mount.readOnly) {
      const files = (volume.projected.sources ?? []).flatMap((source): ProjectedFile[] => {
        if (source.serviceAccountToken) {
          const { path, audience, expirationSeconds } = source.serviceAccountToken;
          return [{ kind: 'token', path, audience, expirationSeconds: expirationSeconds ?? 3600 }];
        }
        if (source.configMap?.name === 'kube-root-ca.crt') {
          return (source.configMap.items ?? []).map((item) => ({ kind: 'ca', path: item.path }));
        }
        const fields = source.downwardAPI?.items ?? [];
        if (fields.length > 0 && fields.every((f) => f.fieldRef?.fieldPath === 'metadata.namespace')) {
          return fields.map((f) => ({ kind: 'namespace', path: f.path }));
        }
        throw new Error(`${where}: volume ${mount.name} has a source this test cannot provide`);
      });
      return { kind: 'projected', volume: mount.name, mountPath: mount.mountPath, files };
    }
    throw new Error(`${where}: volume ${mount.name} is of a kind this test cannot provide`);
  });
  if (pod.automountServiceAccountToken !== false) mounts.push(AUTOMOUNT);

  return {
    namespace,
    serviceAccount: pod.serviceAccountName ?? 'default',
    image: container.image ?? '',
    env,
    user: `${security.runAsUser}:${security.runAsGroup ?? security.runAsUser}`,
    readOnlyRoot: security.readOnlyRootFilesystem === true,
    dropCapabilities: security.capabilities?.drop ?? [],
    noNewPrivileges: security.allowPrivilegeEscalation === false,
    memoryLimit: container.resources?.limits?.['memory'],
    port: port.containerPort,
    liveness: probePath(container.livenessProbe, 'liveness'),
    readiness: probePath(container.readinessProbe, 'readiness'),
    graceSeconds: pod.terminationGracePeriodSeconds ?? 30,
    mounts,
  };
}

/** `16Mi`, `1G`, `512`: a Kubernetes quantity in bytes (the binary and decimal suffixes only). */
export function quantityBytes(quantity: string | undefined): number | undefined {
  if (quantity === undefined) return undefined;
  const match = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(quantity);
  if (!match) throw new Error(`Unsupported quantity '${quantity}'`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 }[match[2] ?? ''] ?? 1;
  return Number(match[1]) * unit;
}
