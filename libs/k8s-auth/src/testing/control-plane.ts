import { KubeConfig } from '@kubernetes/client-node';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BinaryOptions, ensureControlPlaneBinaries } from './control-plane-binaries';
import { ControlPlaneError } from './control-plane-error';
import { recordOwner, removeLeftovers } from './leftovers';
import { ManagedProcess, removeOnExit } from './managed-process';

export interface ControlPlaneOptions extends BinaryOptions {
  /**
   * Use this cluster instead of starting one (minikube, kind, a real cluster). Nothing is started
   * and stop() leaves the cluster alone.
   * @default process.env.E2E_KUBECONFIG
   */
  externalKubeconfig?: string;
  /** How long etcd and kube-apiserver together may take to become ready. @default 60_000 */
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags, e.g. `['--v=4']`. */
  apiServerArgs?: string[];
  /**
   * Keep the processes and their folder when this process exits (the CLI's `up`); stop them later
   * with {@link stopControlPlaneByState}. @default false
   */
  persistent?: boolean;
}

/** A running control plane: everything a client needs to talk to it as an administrator. */
export interface ControlPlane {
  /** A kubeconfig file for an administrator (`system:masters`). */
  readonly kubeconfigPath: string;
  /** The API server's URL, `https://127.0.0.1:<port>`. */
  readonly server: string;
  /** PEM of the CA that signed the API server's serving certificate. */
  readonly caCert: string;
  /** The `iss` of the service-account tokens it signs. */
  readonly issuer: string;
  /** A client configuration for the administrator. */
  readonly kubeConfig: KubeConfig;
  /**
   * PEM of the private key that signs service-account tokens, so tests can sign tokens with chosen
   * claims. Undefined for an external cluster.
   */
  readonly serviceAccountSigningKey?: string;
  /** The pids and folder of a started control plane; undefined for an external cluster. */
  readonly state?: ControlPlaneState;
  /** Stops kube-apiserver only (etcd keeps the data), to test what happens while it is down. */
  stopApiServer(): Promise<void>;
  /** Starts kube-apiserver again on the same address, with the same keys and data. */
  startApiServer(): Promise<void>;
  /** Stops every process it started and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

export interface ControlPlaneState {
  dir: string;
  kubeconfigPath: string;
  server: string;
  pids: { etcd: number; kubeApiServer: number };
}

const PORT_ATTEMPTS = 4;
const DIR_PREFIX = 'k8s-auth-control-plane-';
const SERVICE_CLUSTER_IP_RANGE = '10.0.0.0/24';

/**
 * Starts etcd and kube-apiserver on free loopback ports, each run in a fresh temporary folder, with
 * RBAC, TokenRequest and TokenReview as in a real cluster. Resolves once `/readyz` says so.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const external = options.externalKubeconfig ?? process.env['E2E_KUBECONFIG'];
  if (external) return useExternalCluster(external);

  const binaries = await ensureControlPlaneBinaries(options);
  const timeoutMs = options.startTimeoutMs ?? 60_000;
  const removed = await removeLeftovers(tmpdir(), DIR_PREFIX);
  if (removed.length > 0) {
    process.stderr.write(
      `[control-plane] removed control planes left running by processes that were killed:\n${removed.map((r) => `  ${r}\n`).join('')}`,
    );
  }
  const dir = await fs.mkdtemp(join(tmpdir(), DIR_PREFIX));
  const forget = options.persistent ? () => undefined : removeOnExit(dir);
  const processes: ManagedProcess[] = [];
  // The record that lets a later start clean up after this process if it dies with its reaper (never for `up`).
  const record = () => {
    if (!options.persistent) recordOwner(dir, processes);
  };
  const stopAll = async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await fs.rm(dir, { recursive: true, force: true });
    forget();
  };
  try {
    record();
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const signingKey = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const adminToken = randomBytes(32).toString('base64url');
    await fs.mkdir(join(dir, 'certs'));
    await fs.writeFile(join(dir, 'service-account.key'), signingKey, { mode: 0o600 });
    await fs.writeFile(join(dir, 'tokens.csv'), `${adminToken},admin,admin,system:masters\n`, { mode: 0o600 });

    const etcd = await startWithFreePorts(2, async ([client, peer]) => {
      // A failed attempt may have left a member with other peer URLs behind.
      await fs.rm(join(dir, 'etcd'), { recursive: true, force: true });
      const proc = new ManagedProcess('etcd', binaries.etcd, etcdArgs(dir, client, peer), {
        logFile: join(dir, 'etcd.log'),
        persistent: options.persistent,
      });
      processes.push(proc);
      record();
      await proc.waitUntilReady(() => httpOk(`http://127.0.0.1:${client}/health`), timeoutMs);
      return { proc, url: `http://127.0.0.1:${client}` };
    });

    let apiArgs: string[] = [];
    const startApi = async (args: string[]) => {
      const proc = new ManagedProcess('kube-apiserver', binaries.kubeApiServer, args, {
        logFile: join(dir, 'kube-apiserver.log'),
        persistent: options.persistent,
      });
      processes.push(proc);
      record();
      const port = Number(/--secure-port=(\d+)/.exec(args.join(' '))?.[1]);
      await proc.waitUntilReady(() => apiServerReady(dir, port, adminToken), timeoutMs);
      return proc;
    };
    let apiServer = await startWithFreePorts(1, async ([port]) => {
      apiArgs = [...apiServerArgs(dir, etcd.url, port), ...(options.apiServerArgs ?? [])];
      return startApi(apiArgs);
    });
    const port = Number(/--secure-port=(\d+)/.exec(apiArgs.join(' '))?.[1]);
    const server = `https://127.0.0.1:${port}`;
    const caCert = await readServingCa(dir);
    const kubeconfigPath = join(dir, 'kubeconfig');
    await fs.writeFile(kubeconfigPath, kubeconfigYaml(server, caCert, adminToken), { mode: 0o600 });
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);

    return {
      kubeconfigPath,
      server,
      caCert,
      issuer: server,
      kubeConfig,
      serviceAccountSigningKey: signingKey,
      get state() {
        return {
          dir,
          kubeconfigPath,
          server,
          pids: { etcd: etcd.proc.pid ?? 0, kubeApiServer: apiServer.pid ?? 0 },
        };
      },
      stopApiServer: () => apiServer.stop(),
      startApiServer: async () => {
        if (apiServer.running) return;
        apiServer = await startApi(apiArgs);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Stops a control plane that `up` left running, by the pids in its state. */
export async function stopControlPlaneByState(state: ControlPlaneState, graceMs = 2000): Promise<void> {
  for (const pid of [state.pids.kubeApiServer, state.pids.etcd]) {
    signalGroup(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    signalGroup(pid, 'SIGKILL');
  }
  await fs.rm(state.dir, { recursive: true, force: true });
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function etcdArgs(dir: string, clientPort: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    '--name=control-plane',
    `--data-dir=${join(dir, 'etcd')}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=control-plane=${peer}`,
    // A throw-away store: durability costs seconds per test run and buys nothing.
    '--unsafe-no-fsync',
    '--log-level=warn',
  ];
}

function apiServerArgs(dir: string, etcdUrl: string, port: number): string[] {
  const issuer = `https://127.0.0.1:${port}`;
  return [
    `--etcd-servers=${etcdUrl}`,
    `--cert-dir=${join(dir, 'certs')}`,
    `--secure-port=${port}`,
    '--bind-address=127.0.0.1',
    // Without a default route kube-apiserver cannot guess an address to advertise.
    '--advertise-address=127.0.0.1',
    '--endpoint-reconciler-type=none',
    `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
    '--authorization-mode=RBAC',
    `--token-auth-file=${join(dir, 'tokens.csv')}`,
    // These three switch on the TokenRequest API.
    `--service-account-issuer=${issuer}`,
    `--service-account-signing-key-file=${join(dir, 'service-account.key')}`,
    `--service-account-key-file=${join(dir, 'service-account.key')}`,
    '--allow-privileged=true',
  ];
}

/**
 * Picks free loopback ports and runs `start`; if a port was taken between the pick and the bind,
 * picks others and tries again. Exported for its spec only; not part of the public API.
 */
export async function startWithFreePorts<T>(count: number, start: (ports: number[]) => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const ports = await freePorts(count);
    try {
      return await start(ports);
    } catch (err) {
      lastError = err;
      if (!(err instanceof ControlPlaneError) || !/address already in use/i.test(err.message)) throw err;
    }
  }
  throw lastError;
}

/**
 * A loopback port that was free a moment ago, for a process the caller starts. Another process may take it before
 * that process binds it: prefer port 0 where the process can report the port it got.
 */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0];
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    return typeof address === 'object' && address ? address.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function httpOk(url: string): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return response.ok;
}

async function apiServerReady(dir: string, port: number, adminToken: string): Promise<boolean> {
  const ca = await fs.readFile(join(dir, 'certs', 'apiserver.crt'), 'utf8').catch(() => undefined);
  if (!ca) return false;
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/readyz',
        ca,
        headers: { authorization: `Bearer ${adminToken}` },
        timeout: 2000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** kube-apiserver writes its self-signed serving certificate followed by the CA that signed it. */
async function readServingCa(dir: string): Promise<string> {
  const bundle = await fs.readFile(join(dir, 'certs', 'apiserver.crt'), 'utf8');
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ControlPlaneError(`No certificate in ${join(dir, 'certs', 'apiserver.crt')}`);
  return `${blocks[blocks.length - 1]}\n`;
}

function kubeconfigYaml(server: string, caCert: string, token: string): string {
  // JSON is valid YAML, and kubectl and client libraries read it as a kubeconfig.
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'control-plane',
          cluster: { server, 'certificate-authority-data': Buffer.from(caCert).toString('base64') },
        },
      ],
      users: [{ name: 'admin', user: { token } }],
      contexts: [{ name: 'admin@control-plane', context: { cluster: 'control-plane', user: 'admin' } }],
      'current-context': 'admin@control-plane',
    },
    null,
    2,
  );
}

async function useExternalCluster(path: string): Promise<ControlPlane> {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(path);
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new ControlPlaneError(`${path} has no current cluster`);
  const caCert = cluster.caData
    ? Buffer.from(cluster.caData, 'base64').toString('utf8')
    : cluster.caFile
      ? await fs.readFile(cluster.caFile, 'utf8')
      : '';
  const discovery = await externalIssuer(kubeConfig, cluster.server);
  const external = () => Promise.reject(new ControlPlaneError('An external cluster is not started or stopped here'));
  return {
    kubeconfigPath: path,
    server: cluster.server,
    caCert,
    issuer: discovery,
    kubeConfig,
    stopApiServer: external,
    startApiServer: external,
    stop: async () => undefined,
  };
}

async function externalIssuer(kubeConfig: KubeConfig, server: string): Promise<string> {
  const options: import('node:https').RequestOptions = {};
  await kubeConfig.applyToHTTPSOptions(options);
  const url = new URL('/.well-known/openid-configuration', server);
  return new Promise((resolve, reject) => {
    const req = request(url, { ...options, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        try {
          resolve(String(JSON.parse(body).issuer));
        } catch {
          reject(new ControlPlaneError(`${url} did not answer with an OpenID configuration (HTTP ${res.statusCode})`));
        }
      });
    });
    req.on('error', (err) => reject(new ControlPlaneError(`Cannot reach ${server}: ${err.message}`)));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end();
  });
}
