import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureGoBinaries, freePort, goBuildKey, ManagedProcess, readGoMod } from '@k8s-auth/internal/testing';
import { defaultCacheDirectory } from '@k8s-auth/nestjs/testing';

/** The wrapper module that pins kube-rbac-proxy, beside the control plane's build cache. */
const MODULE_DIR = resolve(__dirname, '..', 'kube-rbac-proxy');
const MODULE = 'github.com/brancz/kube-rbac-proxy';

export interface RunningProxy {
  url: string;
  pid: number;
  /** The flags it was started with, for the bench's report. */
  settings: string;
  stop(): Promise<void>;
}

/** The pinned version, read from the wrapper's go.mod. */
export function kubeRbacProxyVersion(): string {
  return readGoMod(MODULE_DIR, MODULE).version;
}

/** The kube-rbac-proxy binary, built once with Go from the pinned module into the shared cache (a few minutes). */
export async function ensureKubeRbacProxy(progress: (line: string) => void): Promise<string> {
  const { version, goVersion } = readGoMod(MODULE_DIR, MODULE);
  const binary = {
    name: 'kube-rbac-proxy',
    moduleDir: MODULE_DIR,
    packagePath: `${MODULE}/cmd/kube-rbac-proxy`,
    version,
    goVersion,
  };
  const built = await ensureGoBinaries([binary], {
    cacheDirectory: defaultCacheDirectory(),
    key: goBuildKey(`kube-rbac-proxy-${version}`, [binary]),
    onProgress: progress,
    what: 'kube-rbac-proxy',
  });
  return built['kube-rbac-proxy'];
}

/**
 * kube-rbac-proxy on plain HTTP in front of `upstream`, authenticating with TokenReview for `audience` and
 * authorizing `user` for GET `path` statically (no SubjectAccessReview), as the guard's allowlist does. Its client-go
 * rate limit (5 requests/s by default) is raised so that it does not handicap the cold path.
 */
export async function startKubeRbacProxy(options: {
  binary: string;
  dir: string;
  kubeconfig: string;
  upstream: string;
  audience: string;
  user: string;
  path: string;
  /** A `taskset` CPU list to pin it to. */
  cpus?: string;
}): Promise<RunningProxy> {
  const port = await freePort();
  const config = join(options.dir, 'kube-rbac-proxy.yaml');
  await fs.writeFile(
    config,
    [
      'authorization:',
      '  static:',
      '    - user:',
      `        name: ${options.user}`,
      '      verb: get',
      '      resourceRequest: false',
      `      path: ${options.path}`,
      '',
    ].join('\n'),
  );
  const flags = [
    `--insecure-listen-address=127.0.0.1:${port}`,
    `--upstream=${options.upstream}/`,
    `--kubeconfig=${options.kubeconfig}`,
    `--auth-token-audiences=${options.audience}`,
    `--config-file=${config}`,
    '--kube-api-qps=10000',
    '--kube-api-burst=10000',
    '--v=0',
  ];
  const [command, args] = options.cpus
    ? ['taskset', ['-c', options.cpus, options.binary, ...flags]]
    : [options.binary, flags];
  const child = new ManagedProcess('kube-rbac-proxy', command, args, {
    logFile: join(options.dir, 'kube-rbac-proxy.log'),
  });
  const url = `http://127.0.0.1:${port}`;
  // Any HTTP answer (401 without a token) means it listens.
  await child.waitUntilReady(async () => (await fetch(`${url}${options.path}`)).status > 0, 30_000);
  return {
    url,
    pid: child.pid ?? 0,
    settings: flags.filter((f) => !f.startsWith('--kubeconfig') && !f.startsWith('--config-file')).join(' '),
    stop: () => child.stop(5_000),
  };
}
