import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ControlPlaneError } from './control-plane-error';
import { ensureGoBinaries, type GoBinary, goBuildKey, isExecutable, readGoMod } from './go-binaries';

/** Where the Go modules that pin kube-apiserver and etcd live, in the repo and in the built package. */
const GO_MODULES_DIR = resolve(__dirname, '../../control-plane');

export interface ControlPlaneBinaries {
  kubeApiServer: string;
  etcd: string;
}

export interface BinaryOptions {
  /**
   * A folder holding `kube-apiserver` and `etcd` (the envtest convention). Skips the build.
   * @default process.env.KUBEBUILDER_ASSETS
   */
  binaryAssetsDirectory?: string;
  /**
   * Where built binaries are kept, one sub-folder per version.
   * @default $K8S_AUTH_CACHE_DIR, else $XDG_CACHE_HOME/k8s-auth, else ~/.cache/k8s-auth
   */
  cacheDirectory?: string;
  /** Progress lines of a first build (it takes minutes). @default written to stderr */
  onProgress?: (line: string) => void;
}

function readGoModule(name: 'kube-apiserver' | 'etcd', requirePath: string, packagePath: string): GoBinary {
  const moduleDir = join(GO_MODULES_DIR, name);
  const { version, goVersion } = readGoMod(moduleDir, requirePath);
  return {
    name,
    moduleDir,
    packagePath,
    version,
    goVersion,
    ldflags: name === 'kube-apiserver' ? kubernetesVersionStamp(version) : [],
  };
}

/** A module build has no git tree to stamp from; without these a Kubernetes binary reports v0.0.0. */
export function kubernetesVersionStamp(version: string): string[] {
  const [, major, minor] = /^v(\d+)\.(\d+)/.exec(version) ?? [];
  return [
    `-X k8s.io/component-base/version.gitVersion=${version}`,
    `-X k8s.io/component-base/version.gitMajor=${major}`,
    `-X k8s.io/component-base/version.gitMinor=${minor}`,
    '-X k8s.io/component-base/version.gitTreeState=clean',
  ];
}

function goModules(): GoBinary[] {
  return [
    readGoModule('kube-apiserver', 'k8s.io/kubernetes', 'k8s.io/kubernetes/cmd/kube-apiserver'),
    readGoModule('etcd', 'go.etcd.io/etcd/server/v3', 'go.etcd.io/etcd/server/v3'),
  ];
}

/** The versions this package starts, read from its pinned Go modules. */
export function controlPlaneVersions(): { kubernetes: string; etcd: string; go: string } {
  const [kube, etcd] = goModules();
  return { kubernetes: kube.version, etcd: etcd.version, go: kube.goVersion };
}

export function defaultCacheDirectory(): string {
  const env = process.env;
  if (env['K8S_AUTH_CACHE_DIR']) return resolve(env['K8S_AUTH_CACHE_DIR']);
  return join(env['XDG_CACHE_HOME'] ? resolve(env['XDG_CACHE_HOME']) : join(homedir(), '.cache'), 'k8s-auth');
}

/**
 * Returns runnable kube-apiserver and etcd binaries: from KUBEBUILDER_ASSETS, from the cache, or built
 * once with `go build` from the pinned modules (see ensureGoBinaries: one build for concurrent callers).
 */
export async function ensureControlPlaneBinaries(options: BinaryOptions = {}): Promise<ControlPlaneBinaries> {
  const assets = options.binaryAssetsDirectory ?? process.env['KUBEBUILDER_ASSETS'];
  if (assets) return checkAssetsDirectory(resolve(assets));

  const modules = goModules();
  const built = await ensureGoBinaries(modules, {
    cacheDirectory: options.cacheDirectory ? resolve(options.cacheDirectory) : defaultCacheDirectory(),
    key: cacheKey(modules),
    onProgress: options.onProgress ?? ((line: string) => process.stderr.write(`[control-plane] ${line}\n`)),
    what: 'the control plane',
    otherwise: 'or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd binaries.',
  });
  return { kubeApiServer: built['kube-apiserver'], etcd: built['etcd'] };
}

async function checkAssetsDirectory(dir: string): Promise<ControlPlaneBinaries> {
  const binaries = { kubeApiServer: join(dir, 'kube-apiserver'), etcd: join(dir, 'etcd') };
  if (!(await isExecutable(binaries.kubeApiServer, binaries.etcd))) {
    throw new ControlPlaneError(
      `KUBEBUILDER_ASSETS=${dir} must hold executable files named kube-apiserver and etcd. ` +
        'Point it at such a folder, or unset it to build them with Go.',
    );
  }
  return binaries;
}

function cacheKey(modules: GoBinary[]): string {
  const [kube, etcd] = modules;
  return goBuildKey(`kubernetes-${kube.version}-etcd-${etcd.version}`, modules);
}
