import { AppsV1Api, CoreV1Api, loadAllYaml, type V1Deployment } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { type ControlPlane, startControlPlane } from '@k8s-auth/nestjs/testing';

const K8S = resolve(__dirname, '..', '..', 'k8s');

/** Renders an overlay with kubectl's built-in kustomize; the manifests are what a user deploys. */
function render(overlay: string): string {
  return execFileSync('kubectl', ['kustomize', join(K8S, 'overlays', overlay)], { encoding: 'utf8' });
}

function envOf(deployment: V1Deployment): Record<string, string> {
  const container = deployment.spec?.template.spec?.containers[0];
  return Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value ?? '']));
}

describe.each(['projected', 'legacy'])('the %s overlay of k8s/', (overlay) => {
  let cp: ControlPlane;
  let deployments: Record<string, V1Deployment>;

  beforeAll(async () => {
    cp = await startControlPlane();
    // Server-side apply against the real API server: every object must pass its validation.
    execFileSync('kubectl', ['apply', '--server-side', '--field-manager=e2e', '-f', '-'], {
      input: render(overlay),
      env: { ...process.env, KUBECONFIG: cp.kubeconfigPath },
      encoding: 'utf8',
    });
    const apps = cp.kubeConfig.makeApiClient(AppsV1Api);
    deployments = {};
    for (const namespace of ['api', 'secret-store', 'data-store']) {
      deployments[namespace] = await apps.readNamespacedDeployment({ name: 'app', namespace });
    }
  });
  afterAll(() => cp?.stop());

  it("names the secret store's gRPC port in its container and its Service, where it listens", async () => {
    const store = deployments['secret-store'];
    expect(envOf(store)['GRPC_LISTEN_ADDR']).toBe(':8082');
    expect(store.spec?.template.spec?.containers[0].ports).toContainEqual(
      expect.objectContaining({ name: 'grpc', containerPort: 8082 }),
    );
    const service = await cp.kubeConfig
      .makeApiClient(CoreV1Api)
      .readNamespacedService({ name: 'app', namespace: 'secret-store' });
    expect(service.spec?.ports).toContainEqual(
      expect.objectContaining({ name: 'grpc', port: 8082, targetPort: 'grpc', appProtocol: 'kubernetes.io/h2c' }),
    );
  });

  it('runs each app as its own service account', () => {
    for (const [namespace, deployment] of Object.entries(deployments)) {
      expect(deployment.spec?.template.spec?.serviceAccountName).toBe(namespace);
    }
  });

  it('gives each service that guards routes of its own its own name as audience', () => {
    // A shared audience would make a token minted for one service good at the other.
    const audiences = Object.fromEntries(
      Object.entries(deployments).map(([namespace, deployment]) => [namespace, envOf(deployment)['API_AUDIENCE']]),
    );
    expect(audiences).toEqual({ api: 'api', 'secret-store': undefined, 'data-store': 'data-store' });
  });

  it('binds the reviewing services to system:auth-delegator and lets only api read secrets through RBAC', () => {
    const objects = loadAllYaml(render(overlay)) as {
      kind: string;
      roleRef?: { name: string };
      subjects?: { name: string; namespace: string }[];
    }[];
    const delegated = objects
      .filter((o) => o.kind === 'ClusterRoleBinding' && o.roleRef?.name === 'system:auth-delegator')
      .flatMap((o) => o.subjects?.map((s) => `${s.namespace}:${s.name}`) ?? []);
    expect(delegated.sort()).toEqual(['api:api', 'secret-store:secret-store']);
    const readers = objects
      .filter((o) => o.kind === 'RoleBinding' && o.roleRef?.name === 'secret-reader')
      .flatMap((o) => o.subjects?.map((s) => `${s.namespace}:${s.name}`) ?? []);
    expect(readers).toEqual(['api:api']);
    // The store may watch its callers' pods and service account ('local+watch'), and nothing else of theirs.
    const watchers = objects
      .filter((o) => o.kind === 'RoleBinding' && o.roleRef?.name === 'secret-store-binding-watch')
      .flatMap((o) => o.subjects?.map((s) => `${s.namespace}:${s.name}`) ?? []);
    expect(watchers).toEqual(['secret-store:secret-store']);
  });

  if (overlay === 'projected') {
    it('projects a secret-store token where the callers read it, and the store asks for that audience', () => {
      for (const caller of ['api', 'data-store']) {
        const spec = deployments[caller].spec?.template.spec;
        const env = envOf(deployments[caller]);
        const tokenVolume = spec?.volumes?.find((v) =>
          v.projected?.sources?.some((s) => s.serviceAccountToken?.audience === 'secret-store'),
        );
        const source = tokenVolume?.projected?.sources?.find((s) => s.serviceAccountToken)?.serviceAccountToken;
        expect(source).toEqual({ path: 'secret-store-token', audience: 'secret-store', expirationSeconds: 600 });
        const mount = spec?.containers[0].volumeMounts?.find((m) => m.name === tokenVolume?.name);
        expect(mount?.readOnly).toBe(true);
        expect(env['TOKEN_FILE']).toBe(`${mount?.mountPath}/${source?.path}`);
        expect(env['SECRET_STORE_URL']).toBe('http://app.secret-store.svc.cluster.local');
      }
      expect(envOf(deployments['secret-store'])).toMatchObject({ AUTH_MODE: 'projected', AUDIENCE: 'secret-store' });
    });
  } else {
    it('sends the default token and reviews it without an audience', () => {
      for (const caller of ['api', 'data-store']) {
        const spec = deployments[caller].spec?.template.spec;
        expect(spec?.automountServiceAccountToken).toBe(true);
        expect(JSON.stringify(spec?.volumes ?? [])).not.toContain('"audience":"secret-store"');
        expect(envOf(deployments[caller])['TOKEN_FILE']).toBe('/var/run/secrets/kubernetes.io/serviceaccount/token');
      }
      expect(envOf(deployments['secret-store'])['AUTH_MODE']).toBe('legacy');
    });
  }

  it('runs without root, on a read-only root filesystem', () => {
    for (const deployment of Object.values(deployments)) {
      const pod = deployment.spec?.template.spec;
      const container = pod?.containers[0];
      expect(pod?.securityContext?.runAsNonRoot ?? container?.securityContext?.runAsNonRoot).toBe(true);
      expect(container?.securityContext?.readOnlyRootFilesystem).toBe(true);
      expect(container?.securityContext?.allowPrivilegeEscalation).toBe(false);
    }
  });
});
