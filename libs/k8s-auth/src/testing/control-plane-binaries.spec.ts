import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { controlPlaneVersions, ensureControlPlaneBinaries } from './control-plane-binaries';
import { ensureGoBinaries, type GoBinary } from './go-binaries';
import { startWithFreePorts } from './control-plane';
import { ControlPlaneError } from './control-plane-error';

// Bad input and concurrency of the binary build and of start-up. A fake `go` shell script stands in
// for the toolchain, so no test here builds anything for real (every integration spec does).

const KUBE_PACKAGE = 'k8s.io/kubernetes/cmd/kube-apiserver';
const ETCD_PACKAGE = 'go.etcd.io/etcd/server/v3';
const goVersion = controlPlaneVersions().go;
const installHint = `Install Go ${goVersion} or newer`;

let scratch: string;
const savedEnv = { PATH: process.env['PATH'], KUBEBUILDER_ASSETS: process.env['KUBEBUILDER_ASSETS'] };

beforeEach(async () => {
  scratch = await fs.mkdtemp(join(tmpdir(), 'k8s-auth-binaries-spec-'));
  delete process.env['KUBEBUILDER_ASSETS'];
});

afterEach(async () => {
  for (const [key, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  await fs.rm(scratch, { recursive: true, force: true });
});

/** A fresh, empty folder under this test's scratch folder. */
async function folder(name: string): Promise<string> {
  const dir = join(scratch, name);
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

/**
 * Puts a fake `go` first on PATH. It answers `go env GOVERSION` with `version`; `go build` runs
 * `build`, a shell fragment that sees the output file in $out and the package in $pkg.
 */
async function useFakeGo(version: string, build = 'exit 0'): Promise<string> {
  const bin = await folder('fake-go-bin');
  const script = `#!/bin/sh
if [ "$1" = env ] && [ "$2" = GOVERSION ]; then echo ${version}; exit 0; fi
if [ "$1" = build ]; then
  out=""; prev=""
  for arg in "$@"; do
    if [ "$prev" = "-o" ]; then out="$arg"; fi
    prev="$arg"
  done
  pkg="$arg"
${build}
fi
echo "fake go: unexpected arguments: $*" >&2
exit 2
`;
  await fs.writeFile(join(bin, 'go'), script, { mode: 0o755 });
  process.env['PATH'] = `${bin}:${savedEnv.PATH ?? ''}`;
  return bin;
}

/** A `go build` that takes `seconds`, records its package in `counter` and writes a runnable output file. */
function successfulBuild(counter: string, seconds = 0): string {
  return `  sleep ${seconds}
  echo "$pkg" >> '${counter}'
  printf '#!/bin/sh\\nexit 0\\n' > "$out"
  chmod +x "$out"
  exit 0`;
}

async function lines(file: string): Promise<string[]> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

async function rejection(promise: Promise<unknown>): Promise<ControlPlaneError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ControlPlaneError);
  return err as ControlPlaneError;
}

/** Binaries built once with a fake go into a new cache, for tests that then take away or leave behind something. */
async function builtOnce() {
  const counter = join(scratch, 'builds');
  await useFakeGo('go1.26.8', successfulBuild(counter, 1));
  const cacheDirectory = await folder('cache');
  const first = await ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined });
  return { counter, cacheDirectory, first, target: dirname(first.kubeApiServer) };
}

/** The pid of a process that has exited: a lock holder that crashed. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  return child.pid ?? 999_999;
}

describe('ensureControlPlaneBinaries without a usable Go', () => {
  it('says to install Go or set KUBEBUILDER_ASSETS when there is no go on PATH', async () => {
    process.env['PATH'] = await folder('empty-path');
    const cacheDirectory = await folder('cache');

    const err = await rejection(ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined }));

    expect(err.message).toContain("no 'go' command was found");
    expect(err.message).toContain(installHint);
    expect(err.message).toContain('KUBEBUILDER_ASSETS');
    expect(err.message).toMatch(/^[A-Z]/);
    expect(err.message).not.toMatch(/^\s+at /m);
    expect(await fs.readdir(join(cacheDirectory, 'bin'))).toEqual([]);
  });

  it('says a Go that is too old is too old, and what to do', async () => {
    const counter = join(scratch, 'builds');
    await useFakeGo('go1.21.0', successfulBuild(counter));
    const cacheDirectory = await folder('cache');

    const err = await rejection(ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined }));

    expect(err.message).toContain('Go 1.21.0 is too old');
    expect(err.message).toContain(installHint);
    expect(err.message).toContain('KUBEBUILDER_ASSETS');
    expect(await lines(counter)).toEqual([]);
    expect(await fs.readdir(join(cacheDirectory, 'bin'))).toEqual([]);
  });

  it('quotes the build log and leaves no half-built binaries and no lock when go build fails', async () => {
    const counter = join(scratch, 'builds');
    const errorLine = 'vendor/k8s.io/foo/bar.go:12:3: undefined: foo.Bar';
    // kube-apiserver builds; etcd writes half a binary, then fails.
    await useFakeGo(
      'go1.26.8',
      `  if [ "$pkg" = '${ETCD_PACKAGE}' ]; then
    printf 'half a binary' > "$out"; chmod +x "$out"
    echo "# ${ETCD_PACKAGE}" >&2
    echo '${errorLine}' >&2
    exit 1
  fi
${successfulBuild(counter)}`,
    );
    const cacheDirectory = await folder('cache');

    const err = await rejection(ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined }));

    expect(err.message).toContain('go build of etcd');
    expect(err.message).toContain('(exit 1)');
    expect(err.message).toContain(errorLine);
    expect(err.message).toContain(installHint);
    expect(await lines(counter)).toEqual([KUBE_PACKAGE]);
    // No final folder, no lock file, no staging folder with the half-built etcd.
    expect(await fs.readdir(join(cacheDirectory, 'bin'))).toEqual([]);

    // Once go works, the next call builds both again and succeeds.
    await useFakeGo('go1.26.8', successfulBuild(counter));
    const binaries = await ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined });
    expect(await lines(counter)).toEqual([KUBE_PACKAGE, KUBE_PACKAGE, ETCD_PACKAGE]);
    expect(await fs.readFile(binaries.etcd, 'utf8')).not.toContain('half a binary');
  });
});

describe('ensureGoBinaries for another Go server', () => {
  const proxy = (moduleDir: string): GoBinary => ({
    name: 'some-proxy',
    moduleDir,
    packagePath: 'example.com/some-proxy/cmd/some-proxy',
    version: 'v1.2.3',
    goVersion: '1.24',
  });

  it('builds it once into a folder of its own key, and names it when Go is too old', async () => {
    const counter = join(scratch, 'builds');
    const cacheDirectory = await folder('cache');
    const options = { cacheDirectory, key: 'some-proxy-v1.2.3', onProgress: () => undefined, what: 'some-proxy' };
    const moduleDir = await folder('some-proxy-module');

    await useFakeGo('go1.23.9', successfulBuild(counter));
    const err = await rejection(ensureGoBinaries([proxy(moduleDir)], options));
    expect(err.message).toContain('Go 1.23.9 is too old to build some-proxy');
    expect(err.message).toContain('Install Go 1.24 or newer');
    expect(err.message).not.toContain('KUBEBUILDER_ASSETS');

    await useFakeGo('go1.24.0', successfulBuild(counter));
    const built = await ensureGoBinaries([proxy(moduleDir)], options);
    expect(built).toEqual({ 'some-proxy': join(cacheDirectory, 'bin', 'some-proxy-v1.2.3', 'some-proxy') });
    expect(await ensureGoBinaries([proxy(moduleDir)], options)).toEqual(built);
    expect(await lines(counter)).toEqual(['example.com/some-proxy/cmd/some-proxy']);
  });
});

describe('ensureControlPlaneBinaries with KUBEBUILDER_ASSETS', () => {
  async function assetsFolder(mode: number): Promise<string> {
    const dir = await folder(`assets-${mode.toString(8)}`);
    for (const name of ['kube-apiserver', 'etcd']) await fs.writeFile(join(dir, name), '#!/bin/sh\n', { mode });
    return dir;
  }

  it.each([
    ['an empty folder', () => folder('assets-empty')],
    ['a folder that does not exist', async () => join(scratch, 'missing')],
    ['a folder whose binaries are not executable', () => assetsFolder(0o644)],
  ])('rejects %s with a clear message', async (_, makeDir) => {
    const dir = await makeDir();
    for (const options of [{ binaryAssetsDirectory: dir }, {}]) {
      process.env['KUBEBUILDER_ASSETS'] = dir;
      const err = await rejection(ensureControlPlaneBinaries(options));
      expect(err.message).toContain(dir);
      expect(err.message).toContain('must hold executable files named kube-apiserver and etcd');
    }
  });

  it('returns the binaries of a folder that has them, without building', async () => {
    process.env['PATH'] = await folder('empty-path');
    const dir = await assetsFolder(0o755);
    const expected = { kubeApiServer: join(dir, 'kube-apiserver'), etcd: join(dir, 'etcd') };

    expect(await ensureControlPlaneBinaries({ binaryAssetsDirectory: dir })).toEqual(expected);
    process.env['KUBEBUILDER_ASSETS'] = dir;
    expect(await ensureControlPlaneBinaries({ cacheDirectory: await folder('cache') })).toEqual(expected);
    await expect(fs.readdir(join(scratch, 'cache'))).resolves.toEqual([]);
  });
});

describe('ensureControlPlaneBinaries called concurrently', () => {
  it('runs one build that every caller waits for', async () => {
    const counter = join(scratch, 'builds');
    await useFakeGo('go1.26.8', successfulBuild(counter, 1));
    const cacheDirectory = await folder('cache');
    const progress: string[][] = [[], [], []];

    const results = await Promise.all(
      progress.map((log) => ensureControlPlaneBinaries({ cacheDirectory, onProgress: (line) => log.push(line) })),
    );

    expect((await lines(counter)).sort()).toEqual([ETCD_PACKAGE, KUBE_PACKAGE]);
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
    const target = dirname(results[0].kubeApiServer);
    expect(dirname(results[0].etcd)).toBe(target);
    expect(progress.filter((log) => log.some((line) => line.startsWith('building ')))).toHaveLength(1);
    expect(progress.filter((log) => log.some((line) => line.startsWith('waiting for the build')))).toHaveLength(2);
    expect(await fs.readdir(join(cacheDirectory, 'bin'))).toEqual([basename(target)]);

    // Built once, later calls use the cache.
    await ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined });
    expect(await lines(counter)).toHaveLength(2);
  }, 20_000);

  it('takes over a lock left behind by a process that died, also with several callers', async () => {
    const { counter, cacheDirectory, first, target } = await builtOnce();
    expect(await lines(counter)).toHaveLength(2);

    const dead = await deadPid();
    for (const callers of [1, 3]) {
      await fs.rm(target, { recursive: true });
      await fs.writeFile(`${target}.lock`, String(dead));
      const results = await Promise.all(
        Array.from({ length: callers }, () =>
          ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined }),
        ),
      );
      for (const result of results) expect(result).toEqual(first);
      await expect(fs.access(`${target}.lock`)).rejects.toThrow();
    }
    // One build per binary for each takeover, however many callers.
    expect(await lines(counter)).toHaveLength(6);
    expect(await fs.readdir(join(cacheDirectory, 'bin'))).toEqual([basename(target)]);
  }, 20_000);

  it('removes the staging folder of a build whose process died', async () => {
    const { cacheDirectory, first, target } = await builtOnce();
    await fs.rm(target, { recursive: true });
    const abandoned = `${target}.partial-${await deadPid()}-0badf00d`;
    const live = `${target}.partial-${process.pid}-0000beef`;
    for (const dir of [abandoned, live]) await fs.mkdir(dir);
    expect(await ensureControlPlaneBinaries({ cacheDirectory, onProgress: () => undefined })).toEqual(first);
    expect((await fs.readdir(join(cacheDirectory, 'bin'))).sort()).toEqual([basename(target), basename(live)].sort());
  }, 20_000);
});

describe('startWithFreePorts', () => {
  const inUse = (port: number) =>
    new ControlPlaneError(
      `etcd stopped during start-up (exit code 1). Last lines of its log:\nlisten tcp 127.0.0.1:${port}: bind: address already in use`,
    );
  let taken: Server[] = [];

  afterEach(async () => {
    await Promise.all(taken.map((s) => new Promise((r) => s.close(r))));
    taken = [];
  });

  /** Binds `port` on loopback, as another program would between the pick and the start. */
  function occupy(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
      taken.push(server);
    });
  }

  it('tries again with other ports when a port was taken', async () => {
    const calls: number[][] = [];
    const result = await startWithFreePorts(2, async (ports) => {
      calls.push(ports);
      if (calls.length === 1) {
        await occupy(ports[0]);
        throw inUse(ports[0]);
      }
      return 'started';
    });

    expect(result).toBe('started');
    expect(calls).toHaveLength(2);
    for (const ports of calls) {
      expect(ports).toHaveLength(2);
      expect(new Set(ports).size).toBe(2);
      for (const port of ports) expect(port).toBeGreaterThan(0);
    }
    expect(calls[1]).not.toContain(calls[0][0]);
  });

  it('gives up after a few attempts with the last error', async () => {
    const start = jest.fn(async (ports: number[]) => {
      throw inUse(ports[0]);
    });
    const err = await rejection(startWithFreePorts(1, start));
    expect(err.message).toContain('address already in use');
    expect(start.mock.calls.length).toBeGreaterThan(1);
    expect(start.mock.calls.length).toBeLessThanOrEqual(5);
  });

  it.each([
    ['a ControlPlaneError about something else', new ControlPlaneError('etcd was not ready after 60 s')],
    ['an error that is not a ControlPlaneError', new Error('listen EADDRINUSE: address already in use')],
  ])('does not retry %s', async (_, error) => {
    const start = jest.fn(async () => {
      throw error;
    });
    await expect(startWithFreePorts(1, start)).rejects.toBe(error);
    expect(start).toHaveBeenCalledTimes(1);
  });
});
