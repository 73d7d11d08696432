/**
 * The node's addresses. The API server, the kubelet and the pods' gateway share one address on a bridge of the node's
 * own, so pods reach the API server directly and through the `kubernetes` Service, and nothing listens on the
 * machine's outward interfaces.
 */
export const NODE = {
  name: 'k8s-auth-node',
  bridge: 'k8sauth0',
  /** The bridge's address: the node's InternalIP, the API server's address and the pods' gateway. */
  address: '10.244.0.1',
  podSubnet: '10.244.0.0/24',
  podPrefix: 24,
  serviceSubnet: '10.96.0.0/24',
  /** The first address of the Service range, the `kubernetes` Service's. */
  apiServiceIp: '10.96.0.1',
  dnsServiceIp: '10.96.0.10',
  clusterDomain: 'cluster.local',
  apiPort: 6443,
  kubeletPort: 10250,
} as const;
