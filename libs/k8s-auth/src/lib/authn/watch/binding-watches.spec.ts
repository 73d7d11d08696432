import { KubeConfig } from '@kubernetes/client-node';
import { Logger } from '@nestjs/common';
import type { KubernetesApiClient } from '../../kube/kubernetes-api.client';
import { BindingWatches } from './binding-watches';

// Which API servers the binding watch can prove alive; the watches themselves run against a real one in
// binding-watch.integration.spec.ts.

function kubeConfig(server: string, proxyUrl?: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: false, ...(proxyUrl ? { proxyUrl } : {}) }],
    users: [{ name: 'u', token: 'not-used' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return config;
}

describe('BindingWatches', () => {
  let error: jest.SpyInstance;
  beforeEach(() => {
    error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  it.each([
    [
      'a plain http: server (kubectl proxy)',
      kubeConfig('http://127.0.0.1:8001'),
      /http:\/\/127\.0\.0\.1:8001 is not an https: server/,
    ],
    [
      'a server reached through a proxy of the kubeconfig',
      kubeConfig('https://10.0.0.1:6443', 'http://proxy.example:3128'),
      /through the proxy http:\/\/proxy\.example:3128/,
    ],
  ])('watches nothing on %s, says so, and leaves every caller to TokenReview', async (_what, config, reason) => {
    const api = { kubeConfig: () => config } as unknown as KubernetesApiClient;
    const watches = new BindingWatches(api, { stalenessMs: 2000, maxTombstones: 10 });
    watches.start({ namespaces: new Set(['data-store']), serviceAccounts: new Set(['api:api']) });
    await watches.whenSynced();
    expect(watches.scopeOf('api', 'api')).toBeUndefined();
    expect(watches.scopeOf('data-store', 'worker')).toBeUndefined();
    expect(error).toHaveBeenCalledWith(expect.stringMatching(reason));
    expect(error).toHaveBeenCalledWith(expect.stringMatching(/Every token goes to TokenReview/));
    watches.stop();
  });
});
