import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';
import { existsSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ClusterBinaries } from './binaries';
import { writeImageTarball } from './image';
import { type ClusterState, nodeCtr } from './node';
import { poll, run } from './processes';

const ROOT = resolve(__dirname, '../..');
const APPS = ['api', 'secret-store'] as const;
const ROLLOUT_TIMEOUT_S = 180;

/**
 * An app image made without Docker: the machine's Node and the C libraries it links, the webpack bundle and the
 * production dependencies its generated lock file pins, run as uid 1000 from /app as the Dockerfile's runtime stage.
 */
async function buildAppImage(app: string, dir: string, ctr: (...args: string[]) => Promise<unknown>): Promise<string> {
  const dist = join(ROOT, 'dist/apps', app);
  if (!existsSync(join(dist, 'main.js'))) {
    throw new Error(`${dist}/main.js is missing: run 'npx nx run-many -t build -p api secret-store' first`);
  }
  const work = join(dir, 'seed', app);
  const rootfs = join(work, 'rootfs');
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(join(rootfs, 'app'), { recursive: true });
  for (const file of ['main.js', 'package.json', 'package-lock.json']) {
    await fs.copyFile(join(dist, file), join(rootfs, 'app', file));
  }
  await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], { cwd: join(rootfs, 'app'), timeout: 600_000 });
  const node = process.execPath;
  const libraries = [...(await run('ldd', [node])).stdout.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1]);
  for (const file of [node, ...libraries]) {
    await fs.mkdir(join(rootfs, file, '..'), { recursive: true });
    await fs.copyFile(await fs.realpath(file), join(rootfs, file));
    await fs.chmod(join(rootfs, file), 0o755);
  }
  await fs.mkdir(join(rootfs, 'etc'), { recursive: true });
  await fs.writeFile(
    join(rootfs, 'etc/passwd'),
    'root:x:0:0::/root:/usr/sbin/nologin\nnode:x:1000:1000::/app:/usr/sbin/nologin\n',
  );
  await fs.writeFile(join(rootfs, 'etc/group'), 'root:x:0:\nnode:x:1000:\n');
  await fs.mkdir(join(rootfs, 'tmp'), { mode: 0o1777 });
  const name = `localhost/k8s-auth/${app}:seed`;
  const tarball = await writeImageTarball(
    {
      name,
      rootfs,
      entrypoint: [node, 'main.js'],
      user: '1000:1000',
      env: ['NODE_ENV=production', `PATH=${join(node, '..')}`],
      workingDir: '/app',
    },
    work,
  );
  await ctr('images', 'import', tarball);
  await fs.rm(work, { recursive: true, force: true });
  return name;
}

export interface SeedResult {
  seconds: Record<string, number>;
  answers: Record<string, number>;
}

/**
 * The seed on the node: both app images, the overlay's manifests with those images, the walkthrough through the
 * Services, then the api pod deleted and the time until the API server refuses the token it had for the store.
 */
export async function deploySeed(
  binaries: ClusterBinaries,
  state: ClusterState,
  profile: string,
  onProgress: (line: string) => void,
): Promise<SeedResult> {
  const seconds: Record<string, number> = {};
  const timed = async <T>(step: string, work: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const result = await work();
    seconds[step] = Math.round((Date.now() - started) / 100) / 10;
    onProgress(`${step}: ${seconds[step]} s`);
    return result;
  };
  const kubectl = (...args: string[]) =>
    run(binaries.kubectl, [`--kubeconfig=${state.kubeconfigPath}`, ...args], {
      timeout: 300_000,
      maxBuffer: 16 << 20,
    });
  const ctr = nodeCtr(binaries, state);

  const images: Record<string, string> = {};
  for (const app of APPS) images[app] = await timed(`image ${app}`, () => buildAppImage(app, state.dir, ctr));
  let manifests = (await kubectl('kustomize', join(ROOT, 'k8s/overlays', profile))).stdout;
  for (const app of APPS)
    manifests = manifests.replace(new RegExp(`image: k8s-auth/${app}$`, 'gm'), `image: ${images[app]}`);
  manifests = manifests.replace(/imagePullPolicy: IfNotPresent/g, 'imagePullPolicy: Never');
  const file = join(state.dir, `seed-${profile}.yaml`);
  await fs.writeFile(file, manifests);
  await timed('rollout', async () => {
    await kubectl('apply', '-f', file);
    for (const ns of ['secret-store', 'api', 'data-store']) {
      await kubectl('-n', ns, 'rollout', 'status', 'deployment/app', `--timeout=${ROLLOUT_TIMEOUT_S}s`);
    }
  });

  const answers = await walkthrough(binaries, state);
  onProgress(`walkthrough: ${JSON.stringify(answers)}`);
  // The legacy profile's callers send a token of another kind; its revocation is not measured here yet.
  if (profile === 'projected') {
    seconds['api pod deleted until its token is refused'] = await deleteApiPodUntilTokenRefused(binaries, state);
  }
  return { seconds, answers };
}

const kubectlOn =
  (binaries: ClusterBinaries, state: ClusterState) =>
  (...args: string[]) =>
    run(binaries.kubectl, [`--kubeconfig=${state.kubeconfigPath}`, ...args], { timeout: 300_000, maxBuffer: 16 << 20 });

/** The walkthrough through the Services: api -> store, data-store -> store, and a call with no token. */
export async function walkthrough(binaries: ClusterBinaries, state: ClusterState): Promise<Record<string, number>> {
  const kubectl = kubectlOn(binaries, state);
  const serviceUrl = async (ns: string) =>
    `http://${(await kubectl('-n', ns, 'get', 'svc', 'app', '-o', 'jsonpath={.spec.clusterIP}:{.spec.ports[0].port}')).stdout}/`;
  // A rollout is complete while the pods it replaced still terminate and may answer (with the previous settings).
  for (const ns of ['secret-store', 'api', 'data-store']) {
    const alone = await poll(
      async () => (await kubectl('-n', ns, 'get', 'pods', '-o', 'name')).stdout.trim().split('\n').length === 1,
      ROLLOUT_TIMEOUT_S * 1000,
    );
    if (!alone) throw new Error(`The previous pods in ${ns} did not stop within ${ROLLOUT_TIMEOUT_S} s`);
  }
  const answers: Record<string, number> = {};
  for (const [label, ns] of [
    ['api -> store', 'api'],
    ['data-store -> store', 'data-store'],
    ['no token -> store', 'secret-store'],
  ]) {
    const url = await serviceUrl(ns);
    // kube-proxy programs a Service's rules a moment after its pods are ready: until the store's are, the api
    // answers 502 (store unreachable) and is asked again.
    const answered = await poll(async () => {
      const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
      await response.arrayBuffer();
      answers[label] = response.status;
      return response.status !== 502;
    }, 30_000);
    if (!answered && !answers[label]) throw new Error(`${url} (${label}) did not answer within 30 s`);
  }
  return answers;
}

/** The api pod and the host path of the token the kubelet projected for it, audience `secret-store`. */
async function apiPodToken(
  binaries: ClusterBinaries,
  state: ClusterState,
): Promise<{ name: string; tokenFile: string; runAsUser: number }> {
  const kubectl = kubectlOn(binaries, state);
  const pods = JSON.parse((await kubectl('-n', 'api', 'get', 'pods', '-l', 'app=api', '-o', 'json')).stdout);
  const pod = pods.items.find((p: { metadata: { deletionTimestamp?: string } }) => !p.metadata.deletionTimestamp);
  if (!pod) throw new Error('No running api pod');
  const tokenFile = join(
    state.dir,
    'kubelet/pods',
    pod.metadata.uid,
    'volumes/kubernetes.io~projected/secret-store-token/secret-store-token',
  );
  return { name: pod.metadata.name, tokenFile, runAsUser: pod.spec.securityContext?.runAsUser ?? 0 };
}

/**
 * Whether the api's projected token file, as the kubelet wrote it on the node, is readable by the uid the pod runs
 * as (1000): by owner, group or everyone, as the kernel checks it for a process without capabilities.
 */
export async function apiTokenReadableBy(
  binaries: ClusterBinaries,
  state: ClusterState,
): Promise<{ uid: number; mode: string; owner: string; readable: boolean }> {
  const { tokenFile, runAsUser } = await apiPodToken(binaries, state);
  const stat = await fs.stat(tokenFile);
  const readable =
    stat.uid === runAsUser
      ? (stat.mode & 0o400) !== 0
      : stat.gid === runAsUser
        ? (stat.mode & 0o040) !== 0
        : (stat.mode & 0o004) !== 0;
  return { uid: runAsUser, mode: (stat.mode & 0o777).toString(8), owner: `${stat.uid}:${stat.gid}`, readable };
}

/**
 * The api pod's token for the store, as the kubelet projected it, reviewed before and after the pod's deletion;
 * returns the seconds from the deletion until the API server refuses it.
 */
export async function deleteApiPodUntilTokenRefused(binaries: ClusterBinaries, state: ClusterState): Promise<number> {
  const kubectl = kubectlOn(binaries, state);
  const { name, tokenFile } = await apiPodToken(binaries, state);
  const token = (await fs.readFile(tokenFile, 'utf8')).trim();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(state.kubeconfigPath);
  const reviewer = kubeConfig.makeApiClient(AuthenticationV1Api);
  const authenticated = async () =>
    (await reviewer.createTokenReview({ body: { spec: { token, audiences: ['secret-store'] } } })).status
      ?.authenticated === true;
  if (!(await authenticated())) throw new Error("The api pod's token for the store was refused before its deletion");
  const started = Date.now();
  await kubectl('-n', 'api', 'delete', 'pod', name, '--wait=false');
  if (!(await poll(async () => !(await authenticated()), 120_000, 200))) {
    throw new Error("The deleted api pod's token was still accepted after 120 s");
  }
  return Math.round((Date.now() - started) / 100) / 10;
}

/**
 * `kubectl rollout restart` of the secret store while requests go through the api, one after another; returns how long
 * the rollout took and how many requests did not get a 200 (the goal is none).
 */
export async function restartStoreUnderLoad(
  binaries: ClusterBinaries,
  state: ClusterState,
): Promise<{ seconds: number; requests: number; failed: number }> {
  const kubectl = (...args: string[]) =>
    run(binaries.kubectl, [`--kubeconfig=${state.kubeconfigPath}`, ...args], { timeout: 300_000 });
  // The api's own pod may still be replacing the one deleted before.
  await kubectl('-n', 'api', 'rollout', 'status', 'deployment/app', `--timeout=${ROLLOUT_TIMEOUT_S}s`);
  const api = (
    await kubectl('-n', 'api', 'get', 'svc', 'app', '-o', 'jsonpath={.spec.clusterIP}:{.spec.ports[0].port}')
  ).stdout;
  let running = true;
  let requests = 0;
  let failed = 0;
  const load = (async () => {
    while (running) {
      requests++;
      const status = await fetch(`http://${api}/`, { signal: AbortSignal.timeout(5000) }).then(
        async (r) => (await r.arrayBuffer(), r.status),
        () => 0,
      );
      if (status !== 200) failed++;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const started = Date.now();
  try {
    await kubectl('-n', 'secret-store', 'rollout', 'restart', 'deployment/app');
    await kubectl('-n', 'secret-store', 'rollout', 'status', 'deployment/app', `--timeout=${ROLLOUT_TIMEOUT_S}s`);
    // The rollout is complete before the old pod has stopped: requests go on until it is gone.
    await poll(
      async () =>
        (await kubectl('-n', 'secret-store', 'get', 'pods', '-o', 'name')).stdout.trim().split('\n').length === 1,
      ROLLOUT_TIMEOUT_S * 1000,
    );
  } finally {
    running = false;
    await load;
  }
  return { seconds: Math.round((Date.now() - started) / 100) / 10, requests, failed };
}

/**
 * The store switched to `VERIFICATION=local+watch`, then the api pod deleted: returns the seconds until the store
 * itself (not TokenReview) refuses the token the kubelet had projected for that pod, and its answer then.
 */
export async function deleteApiPodUntilStoreRefuses(
  binaries: ClusterBinaries,
  state: ClusterState,
): Promise<{ seconds: number; status: number }> {
  const kubectl = kubectlOn(binaries, state);
  const rolledOut = (ns: string) =>
    kubectl('-n', ns, 'rollout', 'status', 'deployment/app', `--timeout=${ROLLOUT_TIMEOUT_S}s`);
  await kubectl('-n', 'secret-store', 'set', 'env', 'deployment/app', 'VERIFICATION=local+watch');
  await rolledOut('secret-store');
  await rolledOut('api');
  const url = `http://${(await kubectl('-n', 'secret-store', 'get', 'svc', 'app', '-o', 'jsonpath={.spec.clusterIP}:{.spec.ports[0].port}')).stdout}/`;
  const { name, tokenFile } = await apiPodToken(binaries, state);
  const token = (await fs.readFile(tokenFile, 'utf8')).trim();
  const status = async () => {
    const response = await fetch(url, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5000),
    });
    await response.arrayBuffer();
    return response.status;
  };
  // Until only the new store pod answers (the old one, still in the Service for a moment, verifies otherwise).
  const settled = await poll(async () => {
    const pods = (await kubectl('-n', 'secret-store', 'get', 'pods', '-o', 'name')).stdout.trim().split('\n');
    return pods.length === 1 && (await status()) === 200;
  }, ROLLOUT_TIMEOUT_S * 1000);
  if (!settled) throw new Error("The store under local+watch did not accept the api pod's token");
  const started = Date.now();
  await kubectl('-n', 'api', 'delete', 'pod', name, '--wait=false');
  let refusal = 0;
  const refused = async () => {
    refusal = await status();
    return refusal !== 200;
  };
  if (!(await poll(refused, 120_000, 200))) {
    throw new Error("The store under local+watch still accepted the deleted api pod's token after 120 s");
  }
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  // Back to the manifests' verification: an apply keeps a variable that 'set env' added.
  await kubectl('-n', 'secret-store', 'set', 'env', 'deployment/app', 'VERIFICATION-');
  await rolledOut('secret-store');
  await rolledOut('api');
  return { seconds, status: refusal };
}
