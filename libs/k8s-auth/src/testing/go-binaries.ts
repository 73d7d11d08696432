import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ControlPlaneError } from './control-plane-error';

const execFileAsync = promisify(execFile);

/** A Go main package to build from a module folder whose `go.mod` pins it. */
export interface GoBinary {
  /** The file name of the built binary. */
  name: string;
  /** The folder of the `go.mod` (and `go.sum`) that pins the package's module. */
  moduleDir: string;
  packagePath: string;
  /** The version built, for progress lines and errors. */
  version: string;
  /** The oldest Go that builds it (the `go` line of its `go.mod`). */
  goVersion: string;
  ldflags?: string[];
  /** Build tags, e.g. to leave out a part that needs cgo. */
  tags?: string[];
}

export interface GoBuildOptions {
  /** The cache folder; the binaries go to `<cacheDirectory>/bin/<key>/`. */
  cacheDirectory: string;
  /** Names the build ({@link goBuildKey}): a new key is a new build, kept beside the others. */
  key: string;
  onProgress: (line: string) => void;
  /** What is built, for errors ("the control plane"). */
  what: string;
  /** Another way out when Go is missing or too old, appended to those errors ("or set …"). */
  otherwise?: string;
}

/** How to get a Go that builds `minimum`, and the other way out if there is one. */
function installHint(minimum: string, options: GoBuildOptions): string {
  const install = `Install Go ${minimum} or newer (https://go.dev/dl/) and put it on PATH`;
  return options.otherwise ? `${install}, ${options.otherwise}` : `${install}.`;
}

/**
 * The version of `requirePath` that the `go.mod` in `moduleDir` requires, and the Go it asks for (its `go` line).
 * @throws ControlPlaneError when it names either not.
 */
export function readGoMod(moduleDir: string, requirePath: string): { version: string; goVersion: string } {
  const goMod = readFileSync(join(moduleDir, 'go.mod'), 'utf8');
  const escaped = requirePath.replace(/[.]/g, '\\.');
  const version = new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, 'm').exec(goMod)?.[1];
  const goVersion = /^go\s+(\d+\.\d+(?:\.\d+)?)/m.exec(goMod)?.[1];
  if (!version || !goVersion) {
    throw new ControlPlaneError(`${join(moduleDir, 'go.mod')} does not name a ${requirePath} version and a go version`);
  }
  return { version, goVersion };
}

/**
 * `<name>-<platform>-<arch>-<digest>`, a cache key for `binaries`: the name makes the folder readable, the digest of
 * their modules' go.mod and go.sum makes any change of pins a new build.
 */
export function goBuildKey(name: string, binaries: readonly GoBinary[]): string {
  const hash = createHash('sha256');
  for (const dir of new Set(binaries.map((b) => b.moduleDir))) {
    hash.update(readFileSync(join(dir, 'go.mod')));
    hash.update(readFileSync(join(dir, 'go.sum')));
  }
  return `${name}-${process.platform}-${process.arch}-${hash.digest('hex').slice(0, 12)}`;
}

/**
 * Returns the paths of `binaries` (by name), built once with `go build` into the cache. Concurrent callers (parallel
 * test files, several processes) wait for a single build; a binary is only ever seen complete, because each build goes
 * to a private folder that is renamed into place.
 * @throws ControlPlaneError when Go is missing or too old, or a build fails (with the tail of its log).
 */
export async function ensureGoBinaries(
  binaries: readonly GoBinary[],
  options: GoBuildOptions,
): Promise<Record<string, string>> {
  const target = join(options.cacheDirectory, 'bin', options.key);
  const paths = Object.fromEntries(binaries.map((b) => [b.name, join(target, b.name)]));
  if (await isExecutable(...Object.values(paths))) return paths;

  // Callers in this process share one build: they would otherwise race each other for the lock under one pid.
  let build = buildsInProgress.get(target);
  if (build) {
    options.onProgress(`waiting for the build in process ${process.pid} (${target}.lock)`);
  } else {
    build = buildIntoCache(binaries, target, paths, options).finally(() => buildsInProgress.delete(target));
    buildsInProgress.set(target, build);
  }
  return build;
}

const buildsInProgress = new Map<string, Promise<Record<string, string>>>();

async function buildIntoCache(
  binaries: readonly GoBinary[],
  target: string,
  paths: Record<string, string>,
  options: GoBuildOptions,
): Promise<Record<string, string>> {
  const built = () => isExecutable(...Object.values(paths));
  await fs.mkdir(dirname(target), { recursive: true });
  const release = await acquireLock(`${target}.lock`, options.onProgress);
  try {
    // Another process may have finished the build while this one waited for the lock.
    if (await built()) return paths;
    const minimum =
      binaries
        .map((b) => b.goVersion)
        .sort(compareVersions)
        .pop() ?? '1';
    await checkGo(minimum, options);
    await removeAbandonedStaging(target);
    const staging = `${target}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
    await fs.mkdir(staging, { recursive: true });
    try {
      for (const binary of binaries) await goBuild(binary, staging, options);
      // Two processes can both believe they took over one stale lock (each read it before the other replaced it):
      // the lock only spares a second build. Whoever publishes first wins; the other keeps what is there.
      if (!(await built())) {
        await fs.rm(target, { recursive: true, force: true });
        await fs.rename(staging, target).catch(async (err: unknown) => {
          if (!(await built())) throw err;
        });
      }
    } finally {
      // A failed build leaves no half-built binaries behind; a published one left nothing here.
      await fs.rm(staging, { recursive: true, force: true });
    }
    options.onProgress(`binaries ready in ${target}`);
    return paths;
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

export async function isExecutable(...paths: string[]): Promise<boolean> {
  try {
    await Promise.all(paths.map((p) => fs.access(p, fsConstants.X_OK)));
    return true;
  } catch {
    return false;
  }
}

function compareVersions(a: string, b: string): number {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

async function checkGo(minimum: string, options: GoBuildOptions): Promise<void> {
  const hint = installHint(minimum, options);
  let output: string;
  try {
    // The same environment as the build's, so the go that is checked is the go that builds.
    output = (await execFileAsync('go', ['env', 'GOVERSION'], { timeout: 30_000, env: process.env })).stdout.trim();
  } catch {
    throw new ControlPlaneError(`Building ${options.what} needs Go, and no 'go' command was found. ${hint}`);
  }
  const found = /^go(\d+)\.(\d+)(?:\.(\d+))?/.exec(output);
  if (!found) throw new ControlPlaneError(`Could not read the Go version ('${output}'). ${hint}`);
  if (
    compareVersions(
      found
        .slice(1, 4)
        .map((n) => n ?? '0')
        .join('.'),
      minimum,
    ) < 0
  ) {
    throw new ControlPlaneError(`Go ${output.slice(2)} is too old to build ${options.what}. ${hint}`);
  }
}

async function goBuild(binary: GoBinary, outDir: string, options: GoBuildOptions): Promise<void> {
  const { name, version, moduleDir, packagePath } = binary;
  const ldflags = ['-s', '-w', ...(binary.ldflags ?? [])];
  const tags = binary.tags?.length ? ['-tags', binary.tags.join(',')] : [];
  const args = ['build', '-trimpath', ...tags, '-ldflags', ldflags.join(' '), '-o', join(outDir, name), packagePath];
  options.onProgress(`building ${name} ${version} with go (first run only; this takes several minutes)`);
  const started = Date.now();
  const tail: string[] = [];
  await new Promise<void>((resolveBuild, reject) => {
    const child = spawn('go', args, {
      cwd: moduleDir,
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
      () => options.onProgress(`still building ${name} (${Math.round((Date.now() - started) / 1000)} s)`),
      30_000,
    );
    const hint = installHint(binary.goVersion, options);
    child.on('error', (err) => {
      clearInterval(ticker);
      reject(new ControlPlaneError(`Could not run go: ${err.message}. ${hint}`));
    });
    child.on('close', (code) => {
      clearInterval(ticker);
      if (code === 0) return resolveBuild();
      reject(
        new ControlPlaneError(
          `go build of ${name} ${version} failed (exit ${code}) in ${moduleDir}:\n${tail.join('\n')}\n${hint}`,
        ),
      );
    });
  });
  options.onProgress(`built ${name} in ${Math.round((Date.now() - started) / 1000)} s`);
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
