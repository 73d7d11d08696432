import { spawn } from 'node:child_process';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { defaultCacheDirectory } from '@k8s-auth/nestjs/testing';
import { ensureGoBinaries } from '@k8s-auth/internal/testing';
import type { ClusterBinaries } from './binaries';
import type { ClusterState } from './node';
import { run } from './processes';

const ROOT = resolve(__dirname, '../..');
/** An exact version: the module proxy lists none for `@latest`. */
const SKAFFOLD_MODULE = 'github.com/GoogleContainerTools/skaffold/v2';
const SKAFFOLD_VERSION = 'v2.16.1';
const REGISTRY = 'localhost:5000';

/**
 * Skaffold, built once into the cache inside a copy of its own module source (its go.mod and go.sum pin its
 * dependencies; no wrapper module could, since it replaces some of them). The build tags are the release's but
 * `release`, which asks for license files the module does not carry.
 */
export async function ensureSkaffold(onProgress: (line: string) => void): Promise<string> {
  const cacheDirectory = defaultCacheDirectory();
  const key = `cluster-skaffold-${SKAFFOLD_VERSION}-${process.platform}-${process.arch}`;
  const cached = join(cacheDirectory, 'bin', key, 'skaffold');
  if (
    await fs.access(cached, fsConstants.X_OK).then(
      () => true,
      () => false,
    )
  )
    return cached;

  onProgress(`downloading ${SKAFFOLD_MODULE}@${SKAFFOLD_VERSION} from the module proxy`);
  const { stdout } = await run('go', ['mod', 'download', '-json', `${SKAFFOLD_MODULE}@${SKAFFOLD_VERSION}`], {
    maxBuffer: 1 << 20,
    timeout: 600_000,
  });
  const source = (JSON.parse(stdout) as { Dir?: string }).Dir;
  if (!source) throw new Error(`go mod download named no folder for ${SKAFFOLD_MODULE}@${SKAFFOLD_VERSION}`);
  // The module cache is read-only and shared: the build runs in a copy.
  const work = await fs.mkdtemp(join(tmpdir(), 'k8s-auth-skaffold-'));
  try {
    const moduleDir = join(work, 'skaffold');
    await fs.cp(source, moduleDir, { recursive: true });
    await run('chmod', ['-R', 'u+w', moduleDir]);
    const built = await ensureGoBinaries(
      [
        {
          name: 'skaffold',
          moduleDir,
          packagePath: './cmd/skaffold',
          version: SKAFFOLD_VERSION,
          goVersion: '1.24',
          ldflags: [`-X ${SKAFFOLD_MODULE}/pkg/skaffold/version.version=${SKAFFOLD_VERSION}`],
          tags: ['timetzdata', 'osusergo', 'netgo'],
        },
      ],
      { cacheDirectory, key, onProgress, what: 'skaffold' },
    );
    return built['skaffold'];
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/**
 * The base images for the Dockerfile, as scripts/images/base-image.sh prints them (node:20-bookworm-slim, or a
 * stand-in made here where no registry answers); the build stage's defaults to the runtime stage's.
 */
export async function baseImages(docker: string): Promise<{ BASE_IMAGE: string; BUILD_IMAGE: string }> {
  const { stdout } = await run('bash', [join(ROOT, 'scripts/images/base-image.sh')], {
    env: { ...process.env, DOCKER: docker },
    maxBuffer: 16 << 20,
    timeout: 900_000,
  });
  const args = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((line) => line.split(/=(.*)/s, 2)),
  );
  if (!args['BASE_IMAGE']) throw new Error(`scripts/images/base-image.sh printed no BASE_IMAGE:\n${stdout}`);
  return { BASE_IMAGE: args['BASE_IMAGE'], BUILD_IMAGE: args['BUILD_IMAGE'] ?? args['BASE_IMAGE'] };
}

/**
 * `skaffold run` of skaffold.yaml with the given profiles onto the node: images built by Docker from the Dockerfile,
 * pushed to the node's registry (skaffold pushes for any kube-context but a known local one, such as minikube's), where its containerd pulls them; skaffold's kubectl (the node's, first on PATH)
 * applies the rendered overlay and skaffold waits until the Deployments are available. Its output goes to stderr.
 */
export async function skaffoldRun(
  skaffold: string,
  binaries: ClusterBinaries,
  state: ClusterState,
  profiles: string[],
  env: Record<string, string>,
): Promise<void> {
  const args = [
    'run',
    `--profile=${profiles.join(',')}`,
    `--kubeconfig=${state.kubeconfigPath}`,
    `--default-repo=${REGISTRY}`,
    '--interactive=false',
    '--update-check=false',
    '--status-check=true',
  ];
  await new Promise<void>((resolveRun, reject) => {
    const child = spawn(skaffold, args, {
      cwd: ROOT,
      stdio: ['ignore', process.stderr, process.stderr],
      env: {
        ...process.env,
        ...env,
        PATH: `${dirname(binaries.kubectl)}:${process.env['PATH'] ?? ''}`,
      },
    });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0 ? resolveRun() : reject(new Error(`skaffold ${args.join(' ')} ended with ${code ?? signal}`)),
    );
  });
}
