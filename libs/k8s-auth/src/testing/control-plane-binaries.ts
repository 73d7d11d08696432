import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ControlPlaneError } from './control-plane-error';
import { ensureGoBinaries, type GoBinary, isExecutable } from './go-binaries';

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
  const goMod = readFileSync(join(moduleDir, 'go.mod'), 'utf8');
  const version = new RegExp(`^\\s*(?:require\\s+)?${requirePath.replace(/[.]/g, '\\.')}\\s+(v\\S+)`, 'm').exec(
    goMod,
  )?.[1];
  const goVersion = /^go\s+(\d+\.\d+(?:\.\d+)?)/m.exec(goMod)?.[1];
  if (!version || !goVersion) {
    throw new ControlPlaneError(`${join(moduleDir, 'go.mod')} does not name a ${requirePath} version and a go version`);
  }
  return {
    name,
    moduleDir,
    packagePath,
    version,
    goVersion,
    ldflags: name === 'kube-apiserver' ? versionStamp(version) : [],
  };
}

/** A module build has no git tree to stamp from; without these the API server reports v0.0.0. */
function versionStamp(version: string): string[] {
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
  // The versions make the folder readable; the hash of go.mod/go.sum makes any change of pins a new build.
  const hash = createHash('sha256');
  for (const mod of modules) {
    hash.update(readFileSync(join(mod.moduleDir, 'go.mod')));
    hash.update(readFileSync(join(mod.moduleDir, 'go.sum')));
  }
  const [kube, etcd] = modules;
  return `kubernetes-${kube.version}-etcd-${etcd.version}-${process.platform}-${process.arch}-${hash.digest('hex').slice(0, 12)}`;
}
