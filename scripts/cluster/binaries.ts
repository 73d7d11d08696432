import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureControlPlaneBinaries, defaultCacheDirectory } from '@k8s-auth/nestjs/testing';
import {
  ensureGoBinaries,
  type GoBinary,
  goBuildKey,
  kubernetesVersionStamp,
  readGoMod,
} from '@k8s-auth/internal/testing';

/** The wrapper modules that pin every component of the node (see cluster/go/). */
const CLUSTER_DIR = resolve(__dirname, '../../cluster');

export interface ClusterBinaries {
  etcd: string;
  kubeApiServer: string;
  kubelet: string;
  kubeProxy: string;
  kubeScheduler: string;
  kubeControllerManager: string;
  kubectl: string;
  containerd: string;
  containerdShim: string;
  ctr: string;
  coredns: string;
  registry: string;
  pause: string;
  probe: string;
}

function kubernetes(): GoBinary[] {
  const moduleDir = join(CLUSTER_DIR, 'go/kubernetes');
  const { version, goVersion } = readGoMod(moduleDir, 'k8s.io/kubernetes');
  return ['kubelet', 'kube-proxy', 'kube-scheduler', 'kube-controller-manager', 'kubectl'].map((name) => ({
    name,
    moduleDir,
    packagePath: `k8s.io/kubernetes/cmd/${name}`,
    version,
    goVersion,
    ldflags: kubernetesVersionStamp(version),
  }));
}

function containerd(): GoBinary[] {
  const moduleDir = join(CLUSTER_DIR, 'go/containerd');
  const { version, goVersion } = readGoMod(moduleDir, 'github.com/containerd/containerd/v2');
  return ['containerd', 'containerd-shim-runc-v2', 'ctr'].map((name) => ({
    name,
    moduleDir,
    packagePath: `github.com/containerd/containerd/v2/cmd/${name}`,
    version,
    goVersion,
    ldflags: [`-X github.com/containerd/containerd/v2/version.Version=${version}`],
    // The btrfs snapshotter needs cgo and btrfs headers; the node uses overlayfs.
    tags: ['no_btrfs'],
  }));
}

function single(dir: string, requirePath: string, name: string, packagePath: string): GoBinary {
  const moduleDir = join(CLUSTER_DIR, dir);
  const { version, goVersion } = readGoMod(moduleDir, requirePath);
  return { name, moduleDir, packagePath, version, goVersion };
}

/** The node's own programs (pause, probe): their key covers their sources, which no go.sum pins. */
function images(): { binaries: GoBinary[]; sourceHash: string } {
  const moduleDir = join(CLUSTER_DIR, 'images');
  const goVersion = /^go\s+(\S+)/m.exec(readFileSync(join(moduleDir, 'go.mod'), 'utf8'))?.[1] ?? '1';
  const hash = createHash('sha256');
  const binaries = ['pause', 'probe'].map((name) => {
    hash.update(readFileSync(join(moduleDir, name, 'main.go')));
    return { name, moduleDir, packagePath: `./${name}`, version: 'local', goVersion };
  });
  return { binaries, sourceHash: hash.digest('hex').slice(0, 12) };
}

/**
 * Every binary of the node, built once from the pinned modules into the cache beside the control plane's
 * (one `go build` at a time: the machines this runs on have two cores).
 */
export async function ensureClusterBinaries(onProgress: (line: string) => void): Promise<ClusterBinaries> {
  const cacheDirectory = defaultCacheDirectory();
  const build = (name: string, binaries: GoBinary[]) =>
    ensureGoBinaries(binaries, { cacheDirectory, key: goBuildKey(name, binaries), onProgress, what: 'the cluster' });
  const controlPlane = await ensureControlPlaneBinaries({ onProgress });
  const kube = kubernetes();
  const k = await build(`cluster-kubernetes-${kube[0].version}`, kube);
  const c = await build(`cluster-containerd-${containerd()[0].version}`, containerd());
  const dns = single('go/coredns', 'github.com/coredns/coredns', 'coredns', 'github.com/coredns/coredns');
  const d = await build(`cluster-coredns-${dns.version}`, [dns]);
  const reg = single(
    'go/registry',
    'github.com/distribution/distribution/v3',
    'registry',
    'github.com/distribution/distribution/v3/cmd/registry',
  );
  const r = await build(`cluster-registry-${reg.version}`, [reg]);
  const own = images();
  const i = await ensureGoBinaries(own.binaries, {
    cacheDirectory,
    key: `cluster-images-${process.platform}-${process.arch}-${own.sourceHash}`,
    onProgress,
    what: 'the cluster',
  });
  return {
    etcd: controlPlane.etcd,
    kubeApiServer: controlPlane.kubeApiServer,
    kubelet: k['kubelet'],
    kubeProxy: k['kube-proxy'],
    kubeScheduler: k['kube-scheduler'],
    kubeControllerManager: k['kube-controller-manager'],
    kubectl: k['kubectl'],
    containerd: c['containerd'],
    containerdShim: c['containerd-shim-runc-v2'],
    ctr: c['ctr'],
    coredns: d['coredns'],
    registry: r['registry'],
    pause: i['pause'],
    probe: i['probe'],
  };
}
