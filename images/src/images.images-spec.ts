import {
  type ControlPlane,
  createClusterObjects,
  mintServiceAccountToken,
  startControlPlane,
} from '@k8s-auth/nestjs/testing';
import { SecretStoreGrpcClient } from '@k8s-auth/service-runtime/testing';
import { execFile } from 'node:child_process';
import { mkdtempSync, promises as fs, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ApiServerProxy } from '@k8s-auth/internal/testing';
import { type ProjectedVolume, projectVolumes, projectorFor } from './support/cluster';
import { containerLog, DOCKER, docker, dockerLogged, imageSize } from './support/docker';
import { get, type LoadCounts, type Outcome, steadyLoad } from './support/http';
import { type PodPlan, readPodPlans } from './support/pod-plan';
import { summaryFile } from './support/summary-file';

/**
 * The two images built from the Dockerfile as Skaffold builds them, and run as the Deployments in k8s/base run
 * them (user, read-only root with a tmpfs /tmp, no capabilities, no privilege escalation, memory limit, the
 * projected volumes the pod spec names, in-cluster credentials), against a real control plane. The containers
 * share a Docker network, where the store answers as `app.secret-store.svc.cluster.local`; the API server is
 * reached through a relay on the network's gateway as `kubernetes.default.svc`, a name its certificate carries.
 * One setting is added to the manifests' env: the api reads its token file every second (TOKEN_REFRESH_INTERVAL_MS)
 * rather than every 5 minutes, so that a rotation shows within the test.
 */

const ROOT = resolve(__dirname, '..', '..');
const TAG = 'images-test';
const APPS = ['api', 'secret-store'] as const;
const API_SERVER_NAME = 'kubernetes.default.svc';
const GREETING = 'Hello from secret store. You have been authenticated';
const MAX_APP_LAYER_BYTES = 25e6;
const MINUTE = 60_000;
const GRPC_UNAUTHENTICATED = 16;

interface Running {
  plan: PodPlan;
  id: string;
  url: string;
  volumes: ProjectedVolume[];
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const answer = (o: Outcome) => (o.kind === 'answered' ? o.status : o.kind);

describe('the images, run as the manifests run them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-auth-images-'));
  const plans = readPodPlans(join(ROOT, 'k8s', 'base'));
  const running = new Map<string, Running>();
  const figures: { buildSeconds?: number; sizes: string[]; walkthrough: string[] } = { sizes: [], walkthrough: [] };
  const buildArgs: string[] = [];
  let baseImage = '';
  let cp: ControlPlane | undefined;
  let relay: ApiServerProxy | undefined;
  let network = '';
  let gateway = '';

  const store = () => running.get('secret-store') as Running;
  const api = () => running.get('api') as Running;
  const dataStore = () => running.get('data-store') as Running;
  const tokenFile = (r: Running, volume: string, path: string) =>
    join(r.volumes.find((v) => v.name === volume)?.dir ?? '', path);
  const apiToken = () => readFileSync(tokenFile(api(), 'secret-store-token', 'secret-store-token'), 'utf8').trim();

  beforeAll(async () => {
    await docker('version', '--format', '{{.Server.Version}}').catch((err: Error) => {
      throw new Error(`No Docker daemon answers (${DOCKER}): ${err.message}`);
    });
    // The base images: node:20-bookworm-slim, or a local stand-in where no registry is reachable.
    const { stdout } = await promisify(execFile)('bash', [join(ROOT, 'scripts', 'images', 'base-image.sh')], {
      env: { ...process.env, DOCKER },
      maxBuffer: 16 * 1024 * 1024,
    });
    for (const line of stdout.trim().split('\n')) {
      buildArgs.push('--build-arg', line);
      if (line.startsWith('BASE_IMAGE=')) baseImage = line.slice('BASE_IMAGE='.length);
    }

    // As Skaffold builds them: context the repository root, the Dockerfile, APP as the only build argument.
    const started = Date.now();
    for (const app of APPS) {
      const args = [
        'build',
        '--build-arg',
        `APP=${app}`,
        ...buildArgs,
        '-f',
        'Dockerfile',
        '-t',
        `k8s-auth/${app}:${TAG}`,
        '.',
      ];
      await dockerLogged(args, join(dir, `build-${app}.log`), ROOT);
    }
    figures.buildSeconds = Math.round((Date.now() - started) / 1000);

    cp = await startControlPlane();
    await createClusterObjects(cp.kubeConfig, join(ROOT, 'k8s', 'base'));
    network = await docker('network', 'create', `k8s-auth-images-${process.pid}`);
    gateway = await docker('network', 'inspect', '--format', '{{range .IPAM.Config}}{{.Gateway}}{{end}}', network);
    relay = new ApiServerProxy({
      listenHost: gateway,
      target: { host: '127.0.0.1', port: Number(new URL(cp.server).port) },
    });
    await relay.start();

    // The store first: the others call it by its Service's name.
    for (const namespace of ['secret-store', 'api', 'data-store']) {
      const plan = plans.get(namespace);
      if (!plan) throw new Error(`k8s/base has no Deployment in namespace ${namespace}`);
      running.set(namespace, await runPod(cp, plan));
    }
    await Promise.all([...running.values()].map((r) => waitUntilReady(r)));
  }, 60 * MINUTE);

  afterAll(async () => {
    for (const r of running.values()) {
      await fs.writeFile(join(dir, `${r.plan.namespace}.log`), await containerLog(r.id)).catch(() => undefined);
      await docker('rm', '--force', '--volumes', r.id).catch(() => undefined);
      for (const v of r.volumes) await v.projector.stop();
      // The token files: worthless once the control plane is gone, but not left lying around.
      await fs.rm(join(dir, r.plan.namespace), { recursive: true, force: true });
    }
    if (network) await docker('network', 'rm', network).catch(() => undefined);
    await relay?.stop();
    await cp?.stop();
    if (figures.buildSeconds !== undefined) {
      const walkthrough = figures.walkthrough.length ? figures.walkthrough.join(', ') : 'not reached';
      writeFileSync(
        summaryFile(process.pid),
        `images: built in ${figures.buildSeconds} s; ${figures.sizes.join(', ')}; walkthrough: ${walkthrough}`,
      );
    }
    process.stdout.write(`Build logs and container logs: ${dir}\n`);
  }, 5 * MINUTE);

  async function runPod(controlPlane: ControlPlane, plan: PodPlan): Promise<Running> {
    const volumes = await projectVolumes(controlPlane.kubeConfig, plan, dir, controlPlane);
    return runContainer(plan, volumes);
  }

  /**
   * One container of `plan` on `volumes`. `variant` names a second container of the same pod plan with settings
   * of its own added to the manifest's env; it shares the pod's volumes and takes no Service name.
   */
  async function runContainer(
    plan: PodPlan,
    volumes: ProjectedVolume[],
    variant?: { name: string; env: Record<string, string> },
  ): Promise<Running> {
    const args = ['run', '--detach', '--name', `k8s-auth-images-${variant?.name ?? plan.namespace}-${process.pid}`];
    args.push('--network', network);
    if (!variant) args.push('--network-alias', `app.${plan.namespace}.svc.cluster.local`);
    args.push('--user', plan.user, '--security-opt', 'no-new-privileges=' + String(plan.noNewPrivileges));
    if (plan.readOnlyRoot) args.push('--read-only');
    for (const cap of plan.dropCapabilities) args.push('--cap-drop', cap);
    if (plan.memoryLimit) args.push('--memory', plan.memoryLimit.replace(/i$/, '').toLowerCase());
    for (const mount of plan.mounts) {
      if (mount.kind === 'tmpfs') {
        args.push('--tmpfs', `${mount.mountPath}:rw,mode=1777${mount.sizeBytes ? `,size=${mount.sizeBytes}` : ''}`);
      }
    }
    for (const v of volumes) args.push('--volume', `${v.dir}:${v.mountPath}:ro`);
    // In-cluster credentials: the Service `kubernetes` as the kubelet announces it, here the relay.
    args.push('--add-host', `${API_SERVER_NAME}:${gateway}`);
    const env: Record<string, string> = {
      ...plan.env,
      ...(plan.namespace === 'api' && { TOKEN_REFRESH_INTERVAL_MS: '1000' }),
      ...variant?.env,
      KUBERNETES_SERVICE_HOST: API_SERVER_NAME,
      KUBERNETES_SERVICE_PORT: String(relay?.port),
    };
    for (const [name, value] of Object.entries(env)) args.push('--env', `${name}=${serviceUrl(value)}`);
    args.push(`${plan.image}:${TAG}`);
    const id = await docker(...args);
    const ip = await docker('inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', id);
    return { plan, id, url: `http://${ip}:${plan.port}`, volumes };
  }

  /**
   * A Service's URL without a port means port 80, which the Service maps to the pod's port; Docker maps
   * nothing, so the URL names the pod's port itself.
   */
  function serviceUrl(value: string): string {
    return value.replace(/^http:\/\/app\.([\w-]+)\.svc\.cluster\.local(?=\/|$)/, (url, namespace: string) => {
      const target = plans.get(namespace);
      return target ? `${url}:${target.port}` : url;
    });
  }

  /** Polls the readiness probe's path until it answers 200; fails at once, with its log, if the container stops. */
  async function waitUntilReady(r: Running): Promise<void> {
    for (;;) {
      const outcome = await get(`${r.url}${r.plan.readiness}`, {}, 5000);
      if (outcome.kind === 'answered' && outcome.status === 200) return;
      if ((await docker('inspect', '--format', '{{.State.Running}}', r.id)) !== 'true') {
        throw new Error(`${r.plan.namespace} stopped during start-up:\n${await containerLog(r.id, '30')}`);
      }
      await new Promise((done) => setTimeout(done, 250));
    }
  }

  it('builds both images from the Dockerfile: an app layer of at most 25 MB, no source maps, a numeric non-root user', async () => {
    const base = await imageSize(baseImage);
    for (const app of APPS) {
      const image = `k8s-auth/${app}:${TAG}`;
      const size = await imageSize(image);
      figures.sizes.push(`${app} ${mb(size)} (app layer ${mb(size - base)})`);
      expect(size - base).toBeLessThanOrEqual(MAX_APP_LAYER_BYTES);
      expect(await docker('image', 'inspect', '--format', '{{.Config.User}}', image)).toMatch(/^[1-9]\d*:\d+$/);
      const files = await docker(
        'run',
        '--rm',
        '--network',
        'none',
        image,
        'node',
        '-e',
        "console.log(require('fs').readdirSync('.').join('\\n'))",
      );
      expect(files.split('\n')).toContain('main.js');
      expect(files.split('\n').filter((f) => f.endsWith('.map'))).toEqual([]);
    }
  });

  it("runs each service as its Deployment does and answers on its probes' paths", async () => {
    for (const r of running.values()) {
      for (const path of [r.plan.liveness, r.plan.readiness]) {
        expect([r.plan.namespace, path, answer(await get(`${r.url}${path}`))]).toEqual([r.plan.namespace, path, 200]);
      }
      // The user, the read-only root and the writable /tmp the pod spec asks for.
      const probe = await docker(
        'exec',
        r.id,
        'node',
        '-e',
        [
          "const fs = require('fs');",
          "let root = 'writable'; try { fs.writeFileSync('/app/probe', ''); } catch (e) { root = e.code; }",
          "fs.writeFileSync('/tmp/probe', ''); fs.rmSync('/tmp/probe');",
          "console.log(process.getuid() + ':' + process.getgid(), root);",
        ].join(' '),
      );
      expect(probe).toBe(`${r.plan.user} EROFS`);
    }
  });

  it('answers the walkthrough: api → store 200, data-store → store 403, no token → 401', async () => {
    const fromApi = await get(`${api().url}/`);
    const fromDataStore = await get(`${dataStore().url}/`);
    const noToken = await get(`${store().url}/`);
    figures.walkthrough = [
      `api → store ${answer(fromApi)}`,
      `data-store → store ${answer(fromDataStore)}`,
      `no token ${answer(noToken)}`,
    ];
    expect(fromApi).toEqual({ kind: 'answered', status: 200, body: GREETING });
    expect(answer(fromDataStore)).toBe(403);
    expect(answer(noToken)).toBe(401);
  });

  it('answers the walkthrough over gRPC: api → store OK, data-store → store 403, no token UNAUTHENTICATED', async () => {
    // The api and data-store images once more, as the manifests' SECRET_STORE_TRANSPORT comment says, on the
    // pods' own token files; the store's gRPC port straight from the test for the call without a token.
    const overGrpc = { env: { SECRET_STORE_TRANSPORT: 'grpc' } };
    const variants = [
      await runContainer(api().plan, api().volumes, { name: 'api-grpc', ...overGrpc }),
      await runContainer(dataStore().plan, dataStore().volumes, { name: 'data-store-grpc', ...overGrpc }),
    ];
    const grpcPort = (store().plan.env['GRPC_LISTEN_ADDR'] ?? '').split(':').pop();
    const grpc = new SecretStoreGrpcClient(
      `${new URL(store().url).hostname}:${grpcPort}`,
      join(ROOT, 'apps', 'secret-store', 'src', 'proto', 'secret_store.proto'),
    );
    try {
      await Promise.all(variants.map((r) => waitUntilReady(r)));
      const [fromApi, fromDataStore] = await Promise.all(variants.map((r) => get(`${r.url}/`)));
      const noToken = await grpc.call('Hello');
      figures.walkthrough.push(
        `over gRPC: api → store ${answer(fromApi)}`,
        `data-store → store ${answer(fromDataStore)}`,
        `no token status ${noToken.code}`,
      );
      expect(fromApi).toEqual({ kind: 'answered', status: 200, body: GREETING });
      expect(answer(fromDataStore)).toBe(403);
      expect(noToken.code).toBe(GRPC_UNAUTHENTICATED);
    } finally {
      grpc.close();
      for (const r of variants) await docker('rm', '--force', r.id).catch(() => undefined);
    }
  });

  it('picks up a token file rotated in place (..data swap)', async () => {
    const controlPlane = cp;
    if (!controlPlane) throw new Error('no control plane');
    const volume = api().volumes.find((v) => v.name === 'secret-store-token');
    const mount = api().plan.mounts.find((m) => m.kind === 'projected' && m.volume === 'secret-store-token');
    if (!volume || mount?.kind !== 'projected') throw new Error('the api pod has no volume secret-store-token');
    const account = { namespace: 'api', name: api().plan.serviceAccount };
    // The kubelet's swap (new timestamped folder, `..data` renamed over it), twice: first a token for another
    // audience, which the store refuses, so the answer shows which token the api sends; then a right one again.
    const swap = async (audience?: string) => {
      const before = readlinkSync(join(volume.dir, '..data'));
      await volume.projector.stop();
      volume.projector = projectorFor(
        controlPlane.kubeConfig,
        account,
        mount,
        volume.dir,
        volume.pod,
        controlPlane.issuer,
        audience,
      );
      await volume.projector.start();
      expect(readlinkSync(join(volume.dir, '..data'))).not.toBe(before);
    };
    const answerOnceItIs = async (status: number) => {
      for (;;) {
        const outcome = await get(`${api().url}/`);
        if (outcome.kind === 'answered' && outcome.status === status) return outcome.body;
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    await swap('not-the-secret-store');
    expect(JSON.parse(await answerOnceItIs(403))).toMatchObject({ message: 'wrong audience' });
    await swap();
    expect(await answerOnceItIs(200)).toBe(GREETING);
  });

  it.each([
    ['data-store', 403, undefined],
    // A request held inside the service (its TokenReview kept back by the relay) while SIGTERM arrives.
    [
      'api',
      200,
      { path: '/internal/report', account: { namespace: 'data-store', name: 'data-store' }, audience: 'api' },
    ],
    ['secret-store', 200, { path: '/', account: { namespace: 'api', name: 'api' }, audience: 'secret-store' }],
  ] as const)(
    'ends %s on SIGTERM within its grace period, with no request lost',
    async (namespace, expected, held) => {
      if (!cp || !relay) throw new Error('no control plane');
      const r = running.get(namespace) as Running;
      const headers: Record<string, string> =
        namespace === 'secret-store' ? { authorization: `Bearer ${apiToken()}` } : {};
      const load = steadyLoad(`${r.url}/`, headers, expected);
      await load.answeredOnce;

      let inFlight: Promise<Outcome> | undefined;
      if (held) {
        const { token } = await mintServiceAccountToken(cp.kubeConfig, held.account, {
          audiences: [held.audience],
          expirationSeconds: 600,
        });
        const kept = relay.hold();
        inFlight = get(`${r.url}${held.path}`, { authorization: `Bearer ${token}` }, r.plan.graceSeconds * 2000);
        await kept;
      }
      const started = Date.now();
      const stopped = docker('stop', '--time', String(r.plan.graceSeconds), r.id);
      // The service has closed its listener: SIGTERM arrived while the held request is still inside.
      await load.refusedOnce;
      relay.release();
      const heldOutcome = await inFlight;
      await stopped;
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const counts: LoadCounts = await load.stop();
      const state = JSON.parse(await docker('inspect', '--format', '{{json .State}}', r.id)) as {
        ExitCode: number;
        OOMKilled: boolean;
      };
      process.stdout.write(
        `${namespace}: stopped in ${seconds} s (grace ${r.plan.graceSeconds} s), exit ${state.ExitCode}; ` +
          `requests: ${counts.ok} answered, ${counts.turnedAway} turned away before reading, ${counts.refused} refused, ${counts.lost} lost\n`,
      );
      if (held) expect(answer(heldOutcome as Outcome)).toBe(200);
      // SIGKILL after the grace period would be 137.
      expect({ exitCode: state.ExitCode, oomKilled: state.OOMKilled }).toEqual({ exitCode: 0, oomKilled: false });
      expect({ lost: counts.lost, reasons: counts.lostReasons }).toEqual({ lost: 0, reasons: [] });
      expect(counts.ok).toBeGreaterThan(0);
    },
    5 * MINUTE,
  );
});
