import { KubeConfig } from '@kubernetes/client-node';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  type ControlPlane,
  countApiServerRequests,
  createClusterObjects,
  createPod,
  kubeConfigFor,
  mintServiceAccountToken,
  type MintTokenOptions,
  type ServiceAccountRef,
  startControlPlane,
  TokenProjector,
} from '@k8s-auth/nestjs/testing';
import { eventually } from './context';
import type { HttpOutcome } from './http';
import type { SecretLedger } from './ledger';
import { type BuiltApp, type BuiltService, startBuiltService } from '@k8s-auth/service-runtime/testing';

const ROOT = resolve(__dirname, '..', '..', '..');

export const ACCOUNTS = {
  api: { namespace: 'api', name: 'api' },
  secretStore: { namespace: 'secret-store', name: 'secret-store' },
  dataStore: { namespace: 'data-store', name: 'data-store' },
} satisfies Record<string, ServiceAccountRef>;

/** How long the tokens minted here live (`mint`), in seconds. */
const MINTED_TOKEN_SECONDS = 600;

/**
 * A secret store's env for a case whose verdict needs an accepted token to stay cached to its end: the cache holds it
 * as long as the token lives, longer than Jest lets any case run, so no machine is slow enough to outlast it.
 */
export const LASTING_TOKEN_CACHE = { CACHE_TTL_SECONDS: String(MINTED_TOKEN_SECONDS) };

/** A built service as the suite runs it (SIGTERM, SIGKILL after 10 s). */
export type RunningService = BuiltService;

export interface ServiceOptions {
  /** The kubeconfig the service reviews tokens with. @default its own service account's */
  kubeconfig?: string;
  env?: Record<string, string>;
}

/**
 * The services of the repository on a real control plane, without a kubelet, as e2e/ runs them:
 * the namespaces, service accounts and RBAC of k8s/base, a pod object per caller, kubelet-style
 * token files, and the built apps (`dist/apps/<app>/main.js`) as real processes at debug level. Every
 * credential it creates or reads goes into the ledger, and every log stays in `runDir/logs` until
 * the secrets area has read it.
 */
export class SecurityEnvironment {
  readonly logDir: string;
  readonly tokenDir: string;
  readonly kubeconfigs: Record<keyof typeof ACCOUNTS, string>;
  readonly tokenFiles: { api: string; dataStore: string };
  readonly pods: { api: { name: string; uid: string }; dataStore: { name: string; uid: string } };
  private readonly services: RunningService[] = [];
  private readonly projectors: TokenProjector[] = [];
  private stopped = false;

  private constructor(
    readonly cp: ControlPlane,
    readonly ledger: SecretLedger,
    readonly runDir: string,
    init: {
      kubeconfigs: Record<keyof typeof ACCOUNTS, string>;
      pods: SecurityEnvironment['pods'];
      projector: TokenProjector;
    },
  ) {
    this.logDir = join(runDir, 'logs');
    this.tokenDir = join(runDir, 'tokens');
    this.kubeconfigs = init.kubeconfigs;
    this.pods = init.pods;
    this.projectors.push(init.projector);
    this.tokenFiles = {
      api: join(this.tokenDir, 'api-secret-store-token'),
      dataStore: join(this.tokenDir, 'data-store-secret-store-token'),
    };
  }

  static async start(ledger: SecretLedger): Promise<SecurityEnvironment> {
    const runDir = await fs.mkdtemp(join(tmpdir(), 'k8s-auth-security-'));
    await fs.mkdir(join(runDir, 'logs'));
    const cp = await startControlPlane();
    try {
      ledger.addToken(cp.kubeConfig.getCurrentUser()?.token);
      await createClusterObjects(cp.kubeConfig, join(ROOT, 'k8s', 'base'));
      const pods = {
        api: await createPod(cp.kubeConfig, ACCOUNTS.api, 'api-0'),
        dataStore: await createPod(cp.kubeConfig, ACCOUNTS.dataStore, 'data-store-0'),
      };
      const kubeconfigs = {} as Record<keyof typeof ACCOUNTS, string>;
      for (const [key, account] of Object.entries(ACCOUNTS) as [keyof typeof ACCOUNTS, ServiceAccountRef][]) {
        const config = await kubeConfigFor(cp.kubeConfig, account, 24 * 3600);
        ledger.addToken(config.getCurrentUser()?.token);
        kubeconfigs[key] = join(runDir, `${key}.kubeconfig`);
        await fs.writeFile(kubeconfigs[key], config.exportConfig(), { mode: 0o600 });
      }
      const projector = new TokenProjector(cp.kubeConfig, {
        directory: join(runDir, 'tokens'),
        tokens: [
          { path: 'api-secret-store-token', serviceAccount: ACCOUNTS.api, audience: 'secret-store', pod: pods.api },
          {
            path: 'data-store-secret-store-token',
            serviceAccount: ACCOUNTS.dataStore,
            audience: 'secret-store',
            pod: pods.dataStore,
          },
        ],
      });
      const env = new SecurityEnvironment(cp, ledger, runDir, { kubeconfigs, pods, projector });
      await projector.start();
      await env.recordTokenFiles(join(runDir, 'tokens'));
      return env;
    } catch (err) {
      await cp.stop();
      throw err;
    }
  }

  /** A token through TokenRequest, recorded. Audience `secret-store` unless told otherwise. */
  async mint(account: ServiceAccountRef, options: MintTokenOptions = {}): Promise<string> {
    const { token } = await mintServiceAccountToken(this.cp.kubeConfig, account, {
      audiences: ['secret-store'],
      expirationSeconds: MINTED_TOKEN_SECONDS,
      ...options,
    });
    this.ledger.addToken(token);
    return token;
  }

  /**
   * Waits until a new token of api:api, sent with `send` to a local+watch store, is accepted with no TokenReview
   * counted: until its watches hold their first lists, such a store asks TokenReview. Returns that token.
   */
  servedFromWatches(send: (token: string) => Promise<HttpOutcome>): Promise<string> {
    const reviews = () => countApiServerRequests(this.cp.kubeConfig, 'tokenreviews');
    return eventually(
      'the local+watch store answering from its watches (a new token accepted with no TokenReview)',
      async () => {
        const token = await this.mint(ACCOUNTS.api, { boundObject: { kind: 'Pod', ...this.pods.api } });
        const before = await reviews();
        const res = await send(token);
        if (res.status !== 200) throw new Error(`a valid token answered ${res.status}`);
        return (await reviews()) === before ? token : undefined;
      },
      30_000,
      200,
    );
  }

  async readToken(file: string): Promise<string> {
    const token = (await fs.readFile(file, 'utf8')).trim();
    this.ledger.addToken(token);
    return token;
  }

  /** A kubelet-style projector of its own, for a scenario that mistreats its files. */
  async startProjector(directory: string, tokens: ConstructorParameters<typeof TokenProjector>[1]['tokens']) {
    const projector = new TokenProjector(this.cp.kubeConfig, { directory, tokens });
    this.projectors.push(projector);
    await projector.start();
    await this.recordTokenFiles(directory);
    return {
      projector,
      rotate: async () => {
        await projector.rotateNow();
        await this.recordTokenFiles(directory);
      },
    };
  }

  /** Fresh token files for the callers, as the kubelet writes them at 80 % of their life. */
  async rotate(): Promise<void> {
    await this.projectors[0].rotateNow();
    await this.recordTokenFiles(this.tokenDir);
  }

  /**
   * After the service account `key` was deleted and re-created (a new uid: its earlier tokens no longer pass): its
   * kubeconfig and the callers' token files written again, for the services started later.
   */
  async renewCredentials(key: keyof typeof ACCOUNTS): Promise<void> {
    const config = await kubeConfigFor(this.cp.kubeConfig, ACCOUNTS[key], 24 * 3600);
    this.ledger.addToken(config.getCurrentUser()?.token);
    await fs.writeFile(this.kubeconfigs[key], config.exportConfig(), { mode: 0o600 });
    await this.rotate();
  }

  private async recordTokenFiles(directory: string): Promise<void> {
    const data = join(directory, '..data');
    for (const name of await fs.readdir(data)) {
      this.ledger.addToken((await fs.readFile(join(data, name), 'utf8')).trim());
    }
  }

  /** The kubeconfig of `account`, with another server address (e.g. a proxy in front of the API server). */
  async kubeconfigVia(account: keyof typeof ACCOUNTS, server: string): Promise<string> {
    const original = new KubeConfig();
    original.loadFromFile(this.kubeconfigs[account]);
    const cluster = original.getCurrentCluster();
    const user = original.getCurrentUser();
    if (!cluster || !user) throw new Error(`${this.kubeconfigs[account]} has no current cluster or user`);
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ ...cluster, server }],
      users: [user],
      contexts: [{ name: 'via', cluster: cluster.name, user: user.name }],
      currentContext: 'via',
    });
    const file = join(this.runDir, `${account}-via-${new URL(server).port}.kubeconfig`);
    await fs.writeFile(file, config.exportConfig(), { mode: 0o600 });
    return file;
  }

  startSecretStore(options: ServiceOptions = {}): Promise<RunningService> {
    return this.run('secret-store', 'secret-store', {
      AUTH_MODE: 'projected',
      KUBECONFIG: options.kubeconfig ?? this.kubeconfigs.secretStore,
      ...options.env,
    });
  }

  startApi(secretStoreUrl: string, options: ServiceOptions & { tokenFile?: string } = {}): Promise<RunningService> {
    return this.run('api', 'api', {
      SECRET_STORE_URL: secretStoreUrl,
      TOKEN_FILE: options.tokenFile ?? this.tokenFiles.api,
      KUBECONFIG: options.kubeconfig ?? this.kubeconfigs.api,
      ...options.env,
    });
  }

  /** Runs a built app on a free loopback port, at debug level, its output in `logs/<name>.log` (`-2`, `-3`… again). */
  private async run(name: string, app: BuiltApp, env: Record<string, string>): Promise<RunningService> {
    const service = await startBuiltService({ app, name, logDir: this.logDir, env: { LOG_LEVEL: 'debug', ...env } });
    this.services.push(service);
    return service;
  }

  /** Removes the folder with the logs, token files and kubeconfigs (after stop()). */
  async remove(): Promise<void> {
    await fs.rm(this.runDir, { recursive: true, force: true });
  }

  /** Every log file written so far: the services', and the control plane's once it has stopped. */
  async logs(): Promise<{ where: string; text: string }[]> {
    const files = await fs.readdir(this.logDir);
    return Promise.all(
      files.sort().map(async (file) => ({ where: file, text: await fs.readFile(join(this.logDir, file), 'utf8') })),
    );
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.services.map((s) => s.stop()));
    await Promise.all(this.projectors.map((p) => p.stop()));
    // The control plane's folder goes with it: keep its logs for the secrets area.
    const dir = this.cp.state?.dir;
    if (dir) {
      for (const log of ['kube-apiserver.log', 'etcd.log']) {
        await fs.copyFile(join(dir, log), join(this.logDir, `control-plane-${log}`)).catch(() => undefined);
      }
    }
    await this.cp.stop();
  }
}
