import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ControlPlaneError } from './control-plane-error';

const execFileAsync = promisify(execFile);

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

interface GoModule {
  dir: string;
  binary: 'kube-apiserver' | 'etcd';
  packagePath: string;
  version: string;
  goVersion: string;
}

function readGoModule(binary: GoModule['binary'], requirePath: string, packagePath: string): GoModule {
  const dir = join(GO_MODULES_DIR, binary);
  const goMod = readFileSync(join(dir, 'go.mod'), 'utf8');
  const version = new RegExp(`^\\s*(?:require\\s+)?${requirePath.replace(/[.]/g, '\\.')}\\s+(v\\S+)`, 'm').exec(
    goMod,
  )?.[1];
  const goVersion = /^go\s+(\d+\.\d+(?:\.\d+)?)/m.exec(goMod)?.[1];
  if (!version || !goVersion) {
    throw new ControlPlaneError(`${join(dir, 'go.mod')} does not name a ${requirePath} version and a go version`);
  }
  return { dir, binary, packagePath, version, goVersion };
}

function goModules(): GoModule[] {
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
 * once with `go build` from the pinned modules. Concurrent callers (parallel test files, several
 * processes) wait for a single build; a binary is only ever seen complete, because each build goes to
 * a private folder that is renamed into place.
 */
export async function ensureControlPlaneBinaries(options: BinaryOptions = {}): Promise<ControlPlaneBinaries> {
  const assets = options.binaryAssetsDirectory ?? process.env['KUBEBUILDER_ASSETS'];
  if (assets) return checkAssetsDirectory(resolve(assets));

  const modules = goModules();
  const progress = options.onProgress ?? ((line: string) => process.stderr.write(`[control-plane] ${line}\n`));
  const cacheRoot = options.cacheDirectory ? resolve(options.cacheDirectory) : defaultCacheDirectory();
  const target = join(cacheRoot, 'bin', cacheKey(modules));
  const binaries = { kubeApiServer: join(target, 'kube-apiserver'), etcd: join(target, 'etcd') };
  if (await isExecutable(binaries.kubeApiServer, binaries.etcd)) return binaries;

  // Callers in this process share one build: they would otherwise race each other for the lock under one pid.
  let build = buildsInProgress.get(target);
  if (build) {
    progress(`waiting for the build in process ${process.pid} (${target}.lock)`);
  } else {
    build = buildIntoCache(modules, cacheRoot, target, binaries, progress).finally(() =>
      buildsInProgress.delete(target),
    );
    buildsInProgress.set(target, build);
  }
  return build;
}

const buildsInProgress = new Map<string, Promise<ControlPlaneBinaries>>();

async function buildIntoCache(
  modules: GoModule[],
  cacheRoot: string,
  target: string,
  binaries: ControlPlaneBinaries,
  progress: (line: string) => void,
): Promise<ControlPlaneBinaries> {
  await fs.mkdir(join(cacheRoot, 'bin'), { recursive: true });
  const release = await acquireLock(`${target}.lock`, progress);
  try {
    // Another process may have finished the build while this one waited for the lock.
    if (await isExecutable(binaries.kubeApiServer, binaries.etcd)) return binaries;
    await checkGo(modules[0].goVersion);
    await removeAbandonedStaging(target);
    const staging = `${target}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
    await fs.mkdir(staging, { recursive: true });
    try {
      for (const mod of modules) await goBuild(mod, staging, progress);
      // Two processes can both believe they took over one stale lock (each read it before the other replaced it):
      // the lock only spares a second build. Whoever publishes first wins; the other keeps what is there.
      if (!(await isExecutable(binaries.kubeApiServer, binaries.etcd))) {
        await fs.rm(target, { recursive: true, force: true });
        await fs.rename(staging, target).catch(async (err: unknown) => {
          if (!(await isExecutable(binaries.kubeApiServer, binaries.etcd))) throw err;
        });
      }
    } finally {
      // A failed build leaves no half-built binaries behind; a published one left nothing here.
      await fs.rm(staging, { recursive: true, force: true });
    }
    progress(`binaries ready in ${target}`);
    return binaries;
  } finally {
    await release();
  }
}

/** Staging folders of builds whose process died (killed during `go build`): `<target>.partial-<pid>-<random>`. */
async function removeAbandonedStaging(target: string): Promise<void> {
  const prefix = `${basename(target)}.partial-`;
  for (const entry of await fs.readdir(dirname(target))) {
    if (!entry.startsWith(prefix)) continue;
    const pid = Number(entry.slice(prefix.length).split('-')[0]);
    if (pid > 0 && !isAlive(pid)) await fs.rm(join(dirname(target), entry), { recursive: true, force: true });
  }
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

function cacheKey(modules: GoModule[]): string {
  // The versions make the folder readable; the hash of go.mod/go.sum makes any change of pins a new build.
  const hash = createHash('sha256');
  for (const mod of modules) {
    hash.update(readFileSync(join(mod.dir, 'go.mod')));
    hash.update(readFileSync(join(mod.dir, 'go.sum')));
  }
  const [kube, etcd] = modules;
  return `kubernetes-${kube.version}-etcd-${etcd.version}-${process.platform}-${process.arch}-${hash.digest('hex').slice(0, 12)}`;
}

async function isExecutable(...paths: string[]): Promise<boolean> {
  try {
    await Promise.all(paths.map((p) => fs.access(p, fsConstants.X_OK)));
    return true;
  } catch {
    return false;
  }
}

function goInstallHint(minimum: string): string {
  return (
    `Install Go ${minimum} or newer (https://go.dev/dl/) and put it on PATH, ` +
    'or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd binaries.'
  );
}

async function checkGo(minimum: string): Promise<void> {
  let output: string;
  try {
    // The same environment as the build's, so the go that is checked is the go that builds.
    output = (await execFileAsync('go', ['env', 'GOVERSION'], { timeout: 30_000, env: process.env })).stdout.trim();
  } catch {
    throw new ControlPlaneError(
      `Building the control plane needs Go, and no 'go' command was found. ${goInstallHint(minimum)}`,
    );
  }
  const found = /^go(\d+)\.(\d+)(?:\.(\d+))?/.exec(output);
  if (!found) throw new ControlPlaneError(`Could not read the Go version ('${output}'). ${goInstallHint(minimum)}`);
  const have = found.slice(1).map((n) => Number(n ?? 0));
  const want = minimum.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const a = have[i] ?? 0;
    const b = want[i] ?? 0;
    if (a > b) return;
    if (a < b)
      throw new ControlPlaneError(
        `Go ${output.slice(2)} is too old to build the control plane. ${goInstallHint(minimum)}`,
      );
  }
}

async function goBuild(mod: GoModule, outDir: string, progress: (line: string) => void): Promise<void> {
  const ldflags = ['-s', '-w'];
  if (mod.binary === 'kube-apiserver') {
    // A module build has no git tree to stamp from; without this the server reports v0.0.0.
    const [, major, minor] = /^v(\d+)\.(\d+)/.exec(mod.version) ?? [];
    ldflags.push(
      `-X k8s.io/component-base/version.gitVersion=${mod.version}`,
      `-X k8s.io/component-base/version.gitMajor=${major}`,
      `-X k8s.io/component-base/version.gitMinor=${minor}`,
      '-X k8s.io/component-base/version.gitTreeState=clean',
    );
  }
  const args = ['build', '-trimpath', '-ldflags', ldflags.join(' '), '-o', join(outDir, mod.binary), mod.packagePath];
  progress(`building ${mod.binary} ${mod.version} with go (first run only; this takes several minutes)`);
  const started = Date.now();
  const tail: string[] = [];
  await new Promise<void>((resolveBuild, reject) => {
    const child = spawn('go', args, {
      cwd: mod.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=readonly' },
    });
    const keep = (chunk: Buffer) => {
      tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      tail.splice(0, Math.max(0, tail.length - 30));
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const ticker = setInterval(
      () => progress(`still building ${mod.binary} (${Math.round((Date.now() - started) / 1000)} s)`),
      30_000,
    );
    child.on('error', (err) => {
      clearInterval(ticker);
      reject(new ControlPlaneError(`Could not run go: ${err.message}. ${goInstallHint(mod.goVersion)}`));
    });
    child.on('close', (code) => {
      clearInterval(ticker);
      if (code === 0) return resolveBuild();
      reject(
        new ControlPlaneError(
          `go build of ${mod.binary} ${mod.version} failed (exit ${code}) in ${mod.dir}:\n${tail.join('\n')}\n` +
            goInstallHint(mod.goVersion),
        ),
      );
    });
  });
  progress(`built ${mod.binary} in ${Math.round((Date.now() - started) / 1000)} s`);
}

/**
 * A lock file created with O_EXCL holding the owner's pid. A lock whose owner is gone (crashed,
 * killed) is taken over, so an interrupted build never blocks later runs.
 */
async function acquireLock(path: string, progress: (line: string) => void): Promise<() => Promise<void>> {
  let waitingSaid = false;
  for (;;) {
    try {
      const handle = await fs.open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => fs.rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number(await fs.readFile(path, 'utf8').catch(() => ''));
    if (owner > 0 && !isAlive(owner)) {
      await fs.rm(path, { force: true });
      continue;
    }
    if (!waitingSaid) {
      progress(`waiting for the build in process ${owner || '?'} (${path})`);
      waitingSaid = true;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
