import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import {
  type ControlPlane,
  createPod,
  createServiceAccount,
  deletePod,
  mintServiceAccountToken,
  startControlPlane,
} from './index';

async function review(kubeConfig: KubeConfig, token: string, audiences: string[]) {
  const api = kubeConfig.makeApiClient(AuthenticationV1Api);
  const result = await api.createTokenReview({ body: { spec: { token, audiences } } });
  return result.status ?? {};
}

describe('control plane', () => {
  let cp: ControlPlane;
  const account = { namespace: 'shop', name: 'api' };

  beforeAll(async () => {
    cp = await startControlPlane();
    await createServiceAccount(cp.kubeConfig, account);
  });
  afterAll(() => cp?.stop());

  it('mints an audience-bound token that TokenReview accepts for that audience only', async () => {
    const { token, expiresAt } = await mintServiceAccountToken(cp.kubeConfig, account, {
      audiences: ['secret-store'],
      expirationSeconds: 600,
    });
    expect(expiresAt.getTime() - Date.now()).toBeGreaterThan(590_000);

    const ok = await review(cp.kubeConfig, token, ['secret-store']);
    expect(ok.authenticated).toBe(true);
    expect(ok.user?.username).toBe('system:serviceaccount:shop:api');
    expect(ok.audiences).toEqual(['secret-store']);

    const other = await review(cp.kubeConfig, token, ['other']);
    expect(other.authenticated).toBeFalsy();
  });

  it('refuses a pod-bound token once the pod is deleted', async () => {
    const pod = await createPod(cp.kubeConfig, account, 'api-0');
    const { token } = await mintServiceAccountToken(cp.kubeConfig, account, {
      audiences: ['secret-store'],
      expirationSeconds: 600,
      boundObject: { kind: 'Pod', ...pod },
    });
    const before = await review(cp.kubeConfig, token, ['secret-store']);
    expect(before.authenticated).toBe(true);
    expect(before.user?.extra?.['authentication.kubernetes.io/pod-name']).toEqual(['api-0']);

    await deletePod(cp.kubeConfig, account.namespace, pod.name);
    // The API server caches a good review for about 10 s. The deadline only ends a hung test.
    const deadline = Date.now() + 40_000;
    let authenticated: boolean | undefined = true;
    while (authenticated && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      authenticated = (await review(cp.kubeConfig, token, ['secret-store'])).authenticated;
    }
    expect(authenticated).toBeFalsy();
  });

  it('runs beside a second control plane, and stop() removes its processes and folder', async () => {
    const second = await startControlPlane();
    expect(second.server).not.toBe(cp.server);
    const state = second.state;
    await createServiceAccount(second.kubeConfig, { namespace: 'x', name: 'y' });
    await second.stop();
    expect(existsSync(state?.dir ?? '')).toBe(false);
    for (const pid of Object.values(state?.pids ?? {})) {
      expect(() => process.kill(pid, 0)).toThrow();
    }
    // The first one is unaffected.
    await createServiceAccount(cp.kubeConfig, { namespace: 'shop', name: 'other' });
  });

  it('restarts the API server on the same address with the same data and keys', async () => {
    const { token } = await mintServiceAccountToken(cp.kubeConfig, account, { audiences: ['secret-store'] });
    await cp.stopApiServer();
    await expect(review(cp.kubeConfig, token, ['secret-store'])).rejects.toThrow();
    await cp.startApiServer();
    expect((await review(cp.kubeConfig, token, ['secret-store'])).authenticated).toBe(true);
  });

  it('puts the log tail of a process that dies during start-up in the error', async () => {
    await expect(startControlPlane({ apiServerArgs: ['--no-such-flag'] })).rejects.toThrow(
      /kube-apiserver stopped during start-up[\s\S]*no-such-flag/,
    );
  });
});
