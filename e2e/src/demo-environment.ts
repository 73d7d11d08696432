import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  type ControlPlane,
  createClusterObjects,
  createPod,
  kubeConfigFor,
  type ServiceAccountRef,
  startControlPlane,
  TokenProjector,
} from '@k8s-auth/nestjs/testing';
import { type BuiltApp, type BuiltService, startBuiltService } from '@k8s-auth/service-runtime/testing';
import type { TokenVerification } from '@k8s-auth/nestjs';

/**
 * The seed's three apps on a real control plane, without a kubelet: the namespaces, service accounts
 * and RBAC of `k8s/base`, a pod object per caller, a kubelet-style projector writing each caller's
 * token file, and the built services run as real processes. Used by `npm start` and by e2e/.
 */

const ROOT = resolve(__dirname, '..', '..');
export const ACCOUNTS = {
  api: { namespace: 'api', name: 'api' },
  secretStore: { namespace: 'secret-store', name: 'secret-store' },
  dataStore: { namespace: 'data-store', name: 'data-store' },
} satisfies Record<string, ServiceAccountRef>;

export interface DemoEnvironment {
  cp: ControlPlane;
  dir: string;
  /** Writes and rotates the callers' token files. */
  projector: TokenProjector;
  /** The token file each caller sends: audience `secret-store`, bound to the caller's pod. */
  tokenFiles: { api: string; dataStore: string; apiLegacy: string };
  startSecretStore(options?: {
    listen?: string;
    mode?: 'projected' | 'legacy';
    verification?: TokenVerification;
  }): Promise<BuiltService>;
  startCaller(
    who: 'api' | 'data-store',
    options: { secretStoreUrl: string; listen?: string; tokenFile?: string; env?: Record<string, string> },
  ): Promise<BuiltService>;
  stop(): Promise<void>;
}

export async function startDemoEnvironment(): Promise<DemoEnvironment> {
  const cp = await startControlPlane();
  const dir = await fs.mkdtemp(join(tmpdir(), 'k8s-auth-demo-'));
  const services: BuiltService[] = [];
  let projector: TokenProjector | undefined;
  const stop = async () => {
    await Promise.all(services.map((s) => s.stop()));
    await projector?.stop();
    await cp.stop();
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    await createClusterObjects(cp.kubeConfig, join(ROOT, 'k8s', 'base'));
    const apiPod = await createPod(cp.kubeConfig, ACCOUNTS.api, 'api-0');
    const dataStorePod = await createPod(cp.kubeConfig, ACCOUNTS.dataStore, 'data-store-0');
    projector = new TokenProjector(cp.kubeConfig, {
      directory: join(dir, 'tokens'),
      tokens: [
        { path: 'api-secret-store-token', serviceAccount: ACCOUNTS.api, audience: 'secret-store', pod: apiPod },
        {
          path: 'data-store-secret-store-token',
          serviceAccount: ACCOUNTS.dataStore,
          audience: 'secret-store',
          pod: dataStorePod,
        },
        // The seed's first variant: the default token, meant for the API server itself.
        { path: 'api-legacy-token', serviceAccount: ACCOUNTS.api, audience: cp.issuer, pod: apiPod },
      ],
    });
    await projector.start();

    // Each service talks to the API server as its own service account, as it would in a pod.
    const kubeconfigs: Record<string, string> = {};
    for (const [key, account] of Object.entries(ACCOUNTS)) {
      kubeconfigs[key] = join(dir, `${key}.kubeconfig`);
      await fs.writeFile(kubeconfigs[key], (await kubeConfigFor(cp.kubeConfig, account, 24 * 3600)).exportConfig());
    }

    // At debug level, as the walkthrough reads what the services log.
    const run = async (name: string, app: BuiltApp, env: Record<string, string>): Promise<BuiltService> => {
      const service = await startBuiltService({ app, name, logDir: dir, env: { LOG_LEVEL: 'debug', ...env } });
      services.push(service);
      return service;
    };

    return {
      cp,
      dir,
      projector,
      tokenFiles: {
        api: join(dir, 'tokens', 'api-secret-store-token'),
        dataStore: join(dir, 'tokens', 'data-store-secret-store-token'),
        apiLegacy: join(dir, 'tokens', 'api-legacy-token'),
      },
      startSecretStore: (options = {}) =>
        run(
          `secret-store${options.mode === 'legacy' ? '-legacy' : ''}${options.verification ? `-${options.verification}` : ''}`,
          'secret-store',
          {
            LISTEN_ADDR: options.listen ?? '127.0.0.1:0',
            AUTH_MODE: options.mode ?? 'projected',
            VERIFICATION: options.verification ?? 'tokenReview',
            KUBECONFIG: kubeconfigs['secretStore'],
          },
        ),
      startCaller: (who, options) =>
        run(who, 'api', {
          LISTEN_ADDR: options.listen ?? '127.0.0.1:0',
          SECRET_STORE_URL: options.secretStoreUrl,
          // Each caller's own routes accept tokens for its own name only.
          API_AUDIENCE: who,
          TOKEN_FILE: options.tokenFile ?? join(dir, 'tokens', `${who}-secret-store-token`),
          KUBECONFIG: kubeconfigs[who === 'api' ? 'api' : 'dataStore'],
          ...options.env,
        }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
