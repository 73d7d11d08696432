import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { ClusterBinaries } from './binaries';
import { nodeCtr, PROBE_IMAGE, type ClusterState } from './node';
import { REGISTRY } from './registry';
import { poll, run } from './processes';

const POD_TIMEOUT_MS = 120_000;

/** A pod that must end Succeeded: the image was run by the node, and the command's checks passed. */
function probePod(name: string, args: string[], extra: Record<string, unknown> = {}): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: {
      restartPolicy: 'Never',
      containers: [{ name: 'probe', image: PROBE_IMAGE, imagePullPolicy: 'Never', command: ['/probe', ...args] }],
      ...extra,
    },
  };
}

/**
 * Proves the node runs pods: one from the locally built image, then one as uid 1000 that reads its projected
 * ServiceAccount token and the CA the controller-manager publishes. Returns the seconds each took to succeed.
 */
export async function smokeTest(
  binaries: ClusterBinaries,
  state: ClusterState,
  onProgress: (line: string) => void,
): Promise<Record<string, number>> {
  const kubectl = (...args: string[]) =>
    run(binaries.kubectl, [`--kubeconfig=${state.kubeconfigPath}`, ...args], { timeout: 200_000 });
  const pods = [
    probePod('probe-hello', ['read', '/probe']),
    probePod(
      'probe-token',
      ['read', '/var/run/secrets/tokens/token', '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'],
      {
        securityContext: { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true },
        volumes: [
          {
            name: 'token',
            projected: {
              sources: [{ serviceAccountToken: { path: 'token', audience: 'secret-store', expirationSeconds: 600 } }],
            },
          },
        ],
      },
    ),
    // Through DNS and the `kubernetes` Service (kube-proxy), with the automounted token and CA.
    probePod('probe-api', ['api', 'https://kubernetes.default.svc/api'], {
      securityContext: { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true },
    }),
  ];
  // Pulled from the local registry, as an image that skaffold pushed would be.
  const pushed = `${REGISTRY}/k8s-auth/probe:1`;
  const pulled = probePod('probe-registry', ['read', '/probe']) as {
    spec: { containers: Array<Record<string, unknown>> };
  };
  pulled.spec.containers[0]['image'] = pushed;
  pulled.spec.containers[0]['imagePullPolicy'] = 'Always';
  pods.push(pulled);
  const ctr = nodeCtr(binaries, state);
  await ctr('images', 'tag', '--force', PROBE_IMAGE, pushed);
  await ctr('images', 'push', '--plain-http', pushed);
  // The pod's pull policy Always makes the kubelet pull it from the registry. Removing the tag with ctr instead would
  // make containerd's CRI forget every name of that image (it tracks images by id), the local probe's too.
  // The token pod mounts its projected token where the seed's manifests do.
  const tokenPod = pods[1] as { spec: { containers: Array<Record<string, unknown>> } };
  tokenPod.spec.containers[0]['volumeMounts'] = [{ name: 'token', mountPath: '/var/run/secrets/tokens' }];
  const times: Record<string, number> = {};
  // The default ServiceAccount appears a moment after the namespace controller starts.
  for (let i = 0; i < 60; i++) {
    if (
      await kubectl('get', 'serviceaccount', 'default').then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  for (const pod of pods) {
    const name = (pod as { metadata: { name: string } }).metadata.name;
    const file = join(state.dir, `${name}.json`);
    await fs.writeFile(file, JSON.stringify(pod));
    await kubectl('delete', 'pod', name, '--ignore-not-found', '--wait=true');
    const started = Date.now();
    await kubectl('create', '-f', file);
    // A pod that ends Failed ends the wait at once.
    let phase = '';
    await poll(async () => {
      phase = (await kubectl('get', 'pod', name, '-o', 'jsonpath={.status.phase}')).stdout.trim();
      return phase === 'Succeeded' || phase === 'Failed';
    }, POD_TIMEOUT_MS);
    const done = phase === 'Succeeded';
    if (!done) {
      const { stdout } = await kubectl('get', 'pod', name, '-o', 'jsonpath={.status}').catch(() => ({ stdout: '' }));
      onProgress(`${name} ended ${phase || 'nowhere'}: ${stdout}`);
    }
    times[name] = Math.round((Date.now() - started) / 100) / 10;
    const { stdout: logs } = await kubectl('logs', name).catch((e: Error) => ({ stdout: `(no logs: ${e.message})` }));
    onProgress(`${name}: ${done ? 'Succeeded' : 'FAILED'} in ${times[name]} s; its output:\n${logs.trim()}`);
    if (!done) throw new Error(`${name} did not succeed`);
  }
  return times;
}
