import { join } from 'node:path';
import { NODE } from './network';

/** A kubeconfig (JSON is valid YAML) for a client that authenticates with a static token. */
export function kubeconfig(server: string, caCert: string, user: string, token: string): string {
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'node', cluster: { server, 'certificate-authority-data': Buffer.from(caCert).toString('base64') } },
      ],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: user, context: { cluster: 'node', user } }],
      'current-context': user,
    },
    null,
    2,
  );
}

/** containerd's own root, state and socket under `dir`, beside any other containerd (Docker's) on the machine. */
export function containerdConfig(dir: string, shimDir: string, sandboxImage: string): string {
  return `version = 3
root = "${join(dir, 'root')}"
state = "${join(dir, 'state')}"

[grpc]
  address = "${join(dir, 'containerd.sock')}"

[debug]
  level = "info"

[plugins.'io.containerd.internal.v1.opt']
  path = "${join(dir, 'opt')}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "${join(dir, 'certs.d')}"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Built and imported here: no registry serves the default pause image on these machines.
    sandbox = "${sandboxImage}"

[plugins.'io.containerd.cri.v1.runtime']
  # Network namespaces under the state folder, so that 'down' finds and removes every one.
  netns_mounts_under_state_dir = true
  # The machines this runs on withhold CAP_SYS_RESOURCE even from root, so no process may lower its OOM score:
  # without this, runc fails every sandbox ("failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${join(dir, 'cni')}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
      SystemdCgroup = false
# The shims are found on PATH: ${shimDir}
`;
}

/**
 * The pod network: a bridge with host-local addresses. The firewall plugin accepts the pods' forwarded traffic, which
 * a FORWARD policy of DROP (Docker sets one) would otherwise drop.
 */
export function cniConfig(dataDir: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'k8s-auth',
      plugins: [
        {
          type: 'bridge',
          bridge: NODE.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir,
            ranges: [[{ subnet: NODE.podSubnet, gateway: NODE.address }]],
            // No default route: a pod reaches other pods, the node and Services, never an address off the machine.
            routes: [{ dst: NODE.serviceSubnet }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
        { type: 'firewall' },
      ],
    },
    null,
    2,
  );
}

export function kubeletConfig(dir: string, containerdSocket: string): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      // Kubernetes 1.35 and later refuse cgroup v1 hosts unless told otherwise; these machines mount cgroup v1.
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      containerRuntimeEndpoint: `unix://${containerdSocket}`,
      address: NODE.address,
      port: NODE.kubeletPort,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: 0,
      podLogsDir: join(dir, 'pod-logs'),
      // The API server reaches the kubelet (logs, exec) without a client certificate: a single-node dev cluster.
      authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
      authorization: { mode: 'AlwaysAllow' },
      clusterDNS: [NODE.dnsServiceIp],
      clusterDomain: NODE.clusterDomain,
      failSwapOn: false,
      // The machine's disk is shared: evict on a full disk, not on a busy one.
      evictionHard: { 'nodefs.available': '2%', 'imagefs.available': '2%', 'memory.available': '100Mi' },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      serializeImagePulls: false,
    },
    null,
    2,
  );
}

export function kubeProxyConfig(kubeconfigPath: string): string {
  return JSON.stringify(
    {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'iptables',
      // NodePorts on 127.0.0.1 would need net.ipv4.conf.all.route_localnet=1, a change to the whole machine.
      iptables: { localhostNodePorts: false },
      clientConnection: { kubeconfig: kubeconfigPath },
      hostnameOverride: NODE.name,
      bindAddress: NODE.address,
      // Its default ports, on loopback (it refuses port 0).
      healthzBindAddress: '127.0.0.1:10256',
      metricsBindAddress: '127.0.0.1:10249',
      clusterCIDR: NODE.podSubnet,
      // Leave the machine's conntrack settings alone.
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    },
    null,
    2,
  );
}
