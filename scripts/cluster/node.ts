import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, ManagedProcess } from '@k8s-auth/internal/testing';
import type { ClusterBinaries } from './binaries';
import { cniConfig, containerdConfig, kubeconfig, kubeletConfig, kubeProxyConfig } from './configs';
import { COREDNS_IMAGE, writeDnsManifest } from './dns';
import { writeImageTarball } from './image';
import { NODE } from './network';
import { writeRegistryConfig, writeRegistryHosts } from './registry';
import { killPidFile, mountsUnder, pidsRunning, poll, run, stopGroup } from './processes';

export const PAUSE_IMAGE = 'localhost/k8s-auth/pause:1';
export const PROBE_IMAGE = 'localhost/k8s-auth/probe:1';

/** What `up` leaves behind for `down` and for the tests: pids by component, in the order they started. */
/** `ctr` on the node's containerd, in the namespace the kubelet's images live in (`k8s.io`). */
export function nodeCtr(binaries: ClusterBinaries, state: ClusterState) {
  const socket = join(state.dir, 'containerd', 'containerd.sock');
  return (...args: string[]) => run(binaries.ctr, ['--address', socket, '--namespace', 'k8s.io', ...args]);
}

export interface ClusterState {
  dir: string;
  server: string;
  kubeconfigPath: string;
  pids: Record<string, number>;
  /** Seconds from the first process started to the node Ready, by step. */
  timings: Record<string, number>;
  /** The machine's values of the settings the kubelet changes, put back by 'down'. */
  sysctls?: Record<string, string>;
}

/** The kernel settings the kubelet sets for the whole machine when it starts (protectKernelDefaults off). */
const KUBELET_SYSCTLS = ['kernel/panic', 'kernel/panic_on_oops', 'vm/overcommit_memory'];

const COMPONENT_TIMEOUT_MS = 120_000;

export async function startCluster(
  binaries: ClusterBinaries,
  onProgress: (line: string) => void,
  onState: (state: ClusterState) => void,
): Promise<ClusterState> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'k8s-auth-cluster-'));
  const server = `https://${NODE.address}:${NODE.apiPort}`;
  const state: ClusterState = { dir, server, kubeconfigPath: join(dir, 'admin.kubeconfig'), pids: {}, timings: {} };
  const t0 = Date.now();
  const mark = (step: string) => {
    state.timings[step] = Math.round((Date.now() - t0) / 100) / 10;
    onProgress(`${step} after ${state.timings[step]} s`);
    onState(state);
  };
  const start = (name: string, binary: string, args: string[], env?: NodeJS.ProcessEnv) => {
    const proc = new ManagedProcess(name, binary, args, { logFile: join(dir, `${name}.log`), persistent: true, env });
    state.pids[name] = proc.pid ?? 0;
    // Recorded at every start, so that 'down' stops what a failed 'up' left.
    onState(state);
    return proc;
  };

  await ensureBridge();
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await fs.writeFile(join(dir, 'service-account.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  // One static token per client: the bootstrap RBAC roles name these users, the Node authorizer the node's.
  const users: Record<string, { token: string; groups: string }> = {
    admin: { token: token(), groups: 'system:masters' },
    'system:kube-controller-manager': { token: token(), groups: '' },
    'system:kube-scheduler': { token: token(), groups: '' },
    'system:kube-proxy': { token: token(), groups: '' },
    [`system:node:${NODE.name}`]: { token: token(), groups: 'system:nodes' },
  };
  await fs.writeFile(
    join(dir, 'tokens.csv'),
    Object.entries(users)
      .map(([user, u]) => `${u.token},${user},${user},"${u.groups}"`)
      .join('\n') + '\n',
    { mode: 0o600 },
  );

  const etcdPort = await freePort();
  const peerPort = await freePort();
  const etcd = start('etcd', binaries.etcd, [
    '--name=node',
    `--data-dir=${join(dir, 'etcd')}`,
    `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
    `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-cluster=node=http://127.0.0.1:${peerPort}`,
    '--unsafe-no-fsync',
    '--log-level=warn',
  ]);
  await etcd.waitUntilReady(() => httpOk(`http://127.0.0.1:${etcdPort}/health`), COMPONENT_TIMEOUT_MS);
  mark('etcd');

  const saKey = join(dir, 'service-account.key');
  const apiServer = start('kube-apiserver', binaries.kubeApiServer, [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    `--cert-dir=${join(dir, 'apiserver-certs')}`,
    // Its self-signed certificate names the advertised address and the `kubernetes` Service's address.
    `--bind-address=${NODE.address}`,
    `--advertise-address=${NODE.address}`,
    `--secure-port=${NODE.apiPort}`,
    `--service-cluster-ip-range=${NODE.serviceSubnet}`,
    '--endpoint-reconciler-type=lease',
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--token-auth-file=${join(dir, 'tokens.csv')}`,
    `--service-account-issuer=https://kubernetes.default.svc.${NODE.clusterDomain}`,
    `--service-account-signing-key-file=${saKey}`,
    `--service-account-key-file=${saKey}`,
    '--kubelet-preferred-address-types=InternalIP',
    '--allow-privileged=true',
    '--profiling=false',
  ]);
  await apiServer.waitUntilReady(() => apiServerReady(dir, users['admin'].token), COMPONENT_TIMEOUT_MS);
  const caCert = await readServingCa(dir);
  await fs.writeFile(join(dir, 'ca.crt'), caCert);
  const writeKubeconfig = async (file: string, user: string) => {
    await fs.writeFile(join(dir, file), kubeconfig(server, caCert, user, users[user].token), { mode: 0o600 });
    return join(dir, file);
  };
  await writeKubeconfig('admin.kubeconfig', 'admin');
  mark('kube-apiserver');

  start('kube-controller-manager', binaries.kubeControllerManager, [
    `--kubeconfig=${await writeKubeconfig('controller-manager.kubeconfig', 'system:kube-controller-manager')}`,
    `--service-account-private-key-file=${saKey}`,
    `--root-ca-file=${join(dir, 'ca.crt')}`,
    '--use-service-account-credentials=true',
    '--leader-elect=false',
    '--secure-port=0',
  ]);
  start('kube-scheduler', binaries.kubeScheduler, [
    `--kubeconfig=${await writeKubeconfig('scheduler.kubeconfig', 'system:kube-scheduler')}`,
    '--leader-elect=false',
    '--secure-port=0',
  ]);
  mark('controllers started');

  const containerdDir = join(dir, 'containerd');
  const socket = join(containerdDir, 'containerd.sock');
  await fs.mkdir(join(containerdDir, 'cni'), { recursive: true });
  await fs.writeFile(join(containerdDir, 'cni', '10-k8s-auth.conflist'), cniConfig(join(dir, 'cni-ipam')));
  await fs.writeFile(
    join(containerdDir, 'config.toml'),
    containerdConfig(containerdDir, dirname(binaries.containerdShim), PAUSE_IMAGE),
  );
  await writeRegistryHosts(join(containerdDir, 'certs.d'));
  // containerd finds its shim on PATH.
  const nodeEnv = { ...process.env, PATH: `${dirname(binaries.containerdShim)}:/usr/sbin:/usr/bin:/sbin:/bin` };
  const containerd = start(
    'containerd',
    binaries.containerd,
    ['--config', join(containerdDir, 'config.toml')],
    nodeEnv,
  );
  await containerd.waitUntilReady(
    async () => (await run(binaries.ctr, ['--address', socket, 'version'], { timeout: 5000 }), true),
    COMPONENT_TIMEOUT_MS,
  );
  mark('containerd');
  for (const [image, file, entrypoint, user] of [
    [PAUSE_IMAGE, binaries.pause, '/pause', '65535:65535'],
    [PROBE_IMAGE, binaries.probe, '/probe', '65532:65532'],
    [COREDNS_IMAGE, binaries.coredns, '/coredns', '65532:65532'],
  ]) {
    const workDir = join(dir, 'images', image.replace(/[^\w]/g, '_'));
    const name = entrypoint.slice(1);
    const tarball = await writeImageTarball(
      { name: image, files: { [name]: file }, entrypoint: [entrypoint], user },
      workDir,
    );
    await run(binaries.ctr, ['--address', socket, '--namespace', 'k8s.io', 'images', 'import', tarball]);
  }
  mark('images imported');
  // The registry exports no traces: nothing would receive them.
  start('registry', binaries.registry, ['serve', await writeRegistryConfig(dir)], {
    ...process.env,
    OTEL_TRACES_EXPORTER: 'none',
  });

  state.sysctls = {};
  for (const key of KUBELET_SYSCTLS) state.sysctls[key] = (await fs.readFile(`/proc/sys/${key}`, 'utf8')).trim();
  await fs.writeFile(join(dir, 'kubelet.json'), kubeletConfig(dir, socket));
  start(
    'kubelet',
    binaries.kubelet,
    [
      `--config=${join(dir, 'kubelet.json')}`,
      `--kubeconfig=${await writeKubeconfig('kubelet.kubeconfig', `system:node:${NODE.name}`)}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      `--hostname-override=${NODE.name}`,
      `--node-ip=${NODE.address}`,
    ],
    nodeEnv,
  );
  await fs.writeFile(
    join(dir, 'kube-proxy.json'),
    kubeProxyConfig(await writeKubeconfig('kube-proxy.kubeconfig', 'system:kube-proxy')),
  );
  start('kube-proxy', binaries.kubeProxy, [`--config=${join(dir, 'kube-proxy.json')}`], nodeEnv);
  const kubectl = (...args: string[]) =>
    run(binaries.kubectl, [`--kubeconfig=${state.kubeconfigPath}`, ...args], { timeout: 30_000 });
  const ready = await poll(async () => {
    const { stdout } = await kubectl(
      'get',
      'node',
      NODE.name,
      '-o',
      'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    );
    return stdout.trim() === 'True';
  }, COMPONENT_TIMEOUT_MS);
  if (!ready) throw new Error(`The node was not Ready after ${COMPONENT_TIMEOUT_MS / 1000} s; see ${dir}/kubelet.log`);
  mark('node Ready');

  await kubectl('apply', '-f', await writeDnsManifest(dir));
  await kubectl(
    '-n',
    'kube-system',
    'rollout',
    'status',
    'deployment/coredns',
    `--timeout=${COMPONENT_TIMEOUT_MS / 1000}s`,
  );
  mark('DNS Ready');
  return state;
}

/**
 * Stops everything `up` started, by pid: the node's agents first, then each container's processes by the pids its shim
 * recorded, then containerd and the control plane; unmounts what is left under the folder, removes the bridge, then the
 * folder. Never removes a folder that still has a mount under it.
 */
export async function stopCluster(
  state: ClusterState,
  binaries: Pick<ClusterBinaries, 'kubectl' | 'kubeProxy' | 'containerdShim'>,
  onProgress: (line: string) => void,
): Promise<void> {
  // Pods deleted while the kubelet runs have their network torn down by CNI (addresses, firewall rules).
  if (state.pids['kubelet']) {
    const kubectl = (...args: string[]) =>
      run(binaries.kubectl, [`--kubeconfig=${state.kubeconfigPath}`, ...args], { timeout: 90_000 });
    await kubectl('delete', 'deployments,pods', '--all', '--all-namespaces', '--grace-period=1', '--timeout=60s').catch(
      (err: Error) => onProgress(`pods not all deleted, stopping them by pid: ${err.message.split('\n')[0]}`),
    );
  }
  const order = ['kubelet', 'kube-proxy', 'kube-scheduler', 'kube-controller-manager'];
  for (const name of order) if (state.pids[name]) await stopGroup(state.pids[name]);
  const tasks = join(state.dir, 'containerd', 'state', 'io.containerd.runtime.v2.task');
  for (const ns of await fs.readdir(tasks).catch(() => [] as string[])) {
    for (const id of await fs.readdir(join(tasks, ns)).catch(() => [] as string[])) {
      await killPidFile(join(tasks, ns, id, 'init.pid'));
    }
  }
  const socket = join(state.dir, 'containerd', 'containerd.sock');
  for (const pid of await pidsRunning(binaries.containerdShim, socket)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  for (const name of ['containerd', 'registry', 'kube-apiserver', 'etcd'])
    if (state.pids[name]) await stopGroup(state.pids[name]);
  for (const mount of mountsUnder(state.dir)) {
    await run('umount', [mount]).catch(() => run('umount', ['-l', mount]).catch(() => undefined));
  }
  const left = mountsUnder(state.dir);
  if (left.length > 0) {
    throw new Error(`Still mounted, so ${state.dir} is kept:\n${left.join('\n')}`);
  }
  await run('ip', ['link', 'del', NODE.bridge]).catch(() => undefined);
  for (const [key, value] of Object.entries(state.sysctls ?? {})) {
    await fs.writeFile(`/proc/sys/${key}`, value).catch(() => undefined);
  }
  await removeNodeRules(binaries.kubeProxy);
  await fs.rm(state.dir, { recursive: true, force: true });
  onProgress(`stopped the node and removed ${state.dir}`);
}

/**
 * kube-proxy's, the kubelet's and the CNI firewall plugin's iptables chains, which outlive them; Docker's rules and any
 * other stay as they are.
 */
async function removeNodeRules(kubeProxy: string): Promise<void> {
  await run(kubeProxy, ['--cleanup']).catch(() => undefined);
  const ignore = () => undefined;
  for (const iptables of ['iptables', 'ip6tables']) {
    const cni = ['FORWARD', '-m', 'comment', '--comment', 'CNI firewall plugin rules', '-j', 'CNI-FORWARD'];
    await run(iptables, ['-D', ...cni]).catch(ignore);
    for (const parent of ['INPUT', 'OUTPUT']) await run(iptables, ['-D', parent, '-j', 'KUBE-FIREWALL']).catch(ignore);
    const chains: Array<[string, string]> = [
      ['filter', 'CNI-FORWARD'],
      ['filter', 'CNI-ADMIN'],
      ['filter', 'KUBE-FIREWALL'],
      ['filter', 'KUBE-KUBELET-CANARY'],
      ['nat', 'KUBE-KUBELET-CANARY'],
      ['mangle', 'KUBE-KUBELET-CANARY'],
      ['mangle', 'KUBE-IPTABLES-HINT'],
    ];
    for (const [table, chain] of chains) {
      await run(iptables, ['-t', table, '-F', chain]).catch(ignore);
      await run(iptables, ['-t', table, '-X', chain]).catch(ignore);
    }
  }
}

/** The node's bridge with its address, made before anything binds to that address. */
async function ensureBridge(): Promise<void> {
  if (!existsSync(`/sys/class/net/${NODE.bridge}`)) {
    await run('ip', ['link', 'add', NODE.bridge, 'type', 'bridge']);
  }
  const { stdout } = await run('ip', ['-o', '-4', 'addr', 'show', 'dev', NODE.bridge]);
  if (!stdout.includes(`${NODE.address}/`)) {
    await run('ip', ['addr', 'add', `${NODE.address}/${NODE.podPrefix}`, 'dev', NODE.bridge]);
  }
  await run('ip', ['link', 'set', NODE.bridge, 'up']);
  // Service addresses stay on the bridge: without this route a request to a Service whose rules kube-proxy has not
  // written yet would follow the default route off the machine. The route goes with the bridge on 'down'.
  await run('ip', ['route', 'replace', NODE.serviceSubnet, 'dev', NODE.bridge]);
}

function token(): string {
  return randomBytes(32).toString('base64url');
}

async function httpOk(url: string): Promise<boolean> {
  return (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok;
}

async function apiServerReady(dir: string, adminToken: string): Promise<boolean> {
  const ca = await fs.readFile(join(dir, 'apiserver-certs', 'apiserver.crt'), 'utf8').catch(() => undefined);
  if (!ca) return false;
  return new Promise((resolve) => {
    const req = request(
      {
        host: NODE.address,
        port: NODE.apiPort,
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
  const bundle = await fs.readFile(join(dir, 'apiserver-certs', 'apiserver.crt'), 'utf8');
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return `${blocks[blocks.length - 1]}\n`;
}
