import type { KubeConfig } from '@kubernetes/client-node';
import { createPod, type ServiceAccountRef, TokenProjector } from '@k8s-auth/nestjs/testing';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { MountPlan, PodPlan } from './pod-plan';

/** A projected volume on the host, written like the kubelet writes it, for a bind mount. */
export interface ProjectedVolume {
  name: string;
  dir: string;
  mountPath: string;
  projector: TokenProjector;
  /** The pod object its tokens are bound to. */
  pod: { name: string; uid: string };
}

/**
 * Writes a pod's projected volumes into `<dir>/<volume>`: tokens by a kubelet-style TokenProjector (atomic
 * `..data` swaps, renewals), the cluster's CA and the namespace as plain files. Each volume's tokens are bound
 * to a pod object of its own (`<namespace>-<volume>`).
 */
export async function projectVolumes(
  kubeConfig: KubeConfig,
  plan: PodPlan,
  dir: string,
  cluster: { caCert: string; issuer: string },
): Promise<ProjectedVolume[]> {
  const account = { namespace: plan.namespace, name: plan.serviceAccount };
  const volumes: ProjectedVolume[] = [];
  for (const mount of plan.mounts) {
    if (mount.kind !== 'projected') continue;
    const volumeDir = join(dir, plan.namespace, mount.volume);
    const pod = await createPod(kubeConfig, account, `${plan.namespace}-${mount.volume}`);
    const projector = projectorFor(kubeConfig, account, mount, volumeDir, pod, cluster.issuer);
    await projector.start();
    for (const file of mount.files) {
      if (file.kind === 'ca') await fs.writeFile(join(volumeDir, file.path), cluster.caCert, { mode: 0o644 });
      if (file.kind === 'namespace') await fs.writeFile(join(volumeDir, file.path), plan.namespace, { mode: 0o644 });
    }
    volumes.push({ name: mount.volume, dir: volumeDir, mountPath: mount.mountPath, projector, pod });
  }
  return volumes;
}

/**
 * A projector for a volume's token files, bound to `pod`: for the audience the volume names (without one, the API
 * server's own), or for `audience` instead.
 */
export function projectorFor(
  kubeConfig: KubeConfig,
  account: ServiceAccountRef,
  mount: Extract<MountPlan, { kind: 'projected' }>,
  directory: string,
  pod: { name: string; uid: string },
  issuer: string,
  audience?: string,
): TokenProjector {
  return new TokenProjector(kubeConfig, {
    directory,
    tokens: mount.files.flatMap((file) =>
      file.kind === 'token'
        ? [
            {
              path: file.path,
              serviceAccount: account,
              audience: audience ?? file.audience ?? issuer,
              expirationSeconds: file.expirationSeconds,
              pod,
            },
          ]
        : [],
    ),
  });
}
