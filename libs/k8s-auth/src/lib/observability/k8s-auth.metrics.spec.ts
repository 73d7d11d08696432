import { Registry } from 'prom-client';
import { K8sAuthMetrics } from './k8s-auth.metrics';

async function decisions(registry: Registry): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric('k8s_auth_guard_decisions_total')?.get();
  return Object.fromEntries((metric?.values ?? []).map((v) => [String(v.labels['decision']), v.value]));
}

describe('K8sAuthMetrics decisions', () => {
  it('counts decisions by result, as of each scrape', async () => {
    const registry = new Registry();
    const metrics = new K8sAuthMetrics({ metrics: registry });
    expect(await decisions(registry)).toEqual({});
    metrics.decision('allowed');
    metrics.decision('allowed');
    metrics.decision('forbidden');
    expect(await decisions(registry)).toEqual({ allowed: 2, forbidden: 1 });
    metrics.decision('allowed');
    expect(await decisions(registry)).toEqual({ allowed: 3, forbidden: 1 });
    expect(await registry.metrics()).toContain('k8s_auth_guard_decisions_total{decision="allowed"} 3');
  });

  it('adds up the decisions of every module that shares a registry, and keeps registries apart', async () => {
    const shared = new Registry();
    const other = new Registry();
    new K8sAuthMetrics({ metrics: shared }).decision('unavailable');
    new K8sAuthMetrics({ metrics: shared }).decision('unavailable');
    new K8sAuthMetrics({ metrics: other }).decision('bad_request');
    expect(await decisions(shared)).toEqual({ unavailable: 2 });
    expect(await decisions(other)).toEqual({ bad_request: 1 });
  });

  it('registers nothing with metrics: false', () => {
    const metrics = new K8sAuthMetrics({ metrics: false });
    expect(() => metrics.decision('allowed')).not.toThrow();
  });
});
