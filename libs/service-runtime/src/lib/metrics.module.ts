import { Controller, type DynamicModule, Get, Inject, Module, Res } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { PublicRoute } from '@k8s-auth/nestjs';
import { collectDefaultMetrics, register, type Registry } from 'prom-client';

const METRICS_REGISTRY = Symbol('METRICS_REGISTRY');

/** `GET /metrics`: the registry in Prometheus's text format; no token needed, like the health routes. */
@Controller()
@PublicRoute()
class MetricsController {
  constructor(
    @Inject(METRICS_REGISTRY) private readonly registry: Registry,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  @Get('metrics')
  async metrics(@Res({ passthrough: true }) response: unknown): Promise<string> {
    // Through the adapter: the reply is Fastify's in the services, Express's elsewhere.
    this.adapterHost.httpAdapter.setHeader(response, 'Content-Type', this.registry.contentType);
    return this.registry.metrics();
  }
}

// prom-client refuses to register its process metrics twice in one registry.
const withProcessMetrics = new WeakSet<Registry>();

@Module({})
export class MetricsModule {
  /**
   * Serves `registry`: prom-client's global registry by default, where `K8sAuthModule` writes unless given its own
   * (`metrics` option); pass that same registry here. With it, Node's process metrics (`process_cpu_*_seconds_total`,
   * memory, event-loop lag), unless `processMetrics: false`.
   */
  static forRoot(options: { registry?: Registry; processMetrics?: boolean } = {}): DynamicModule {
    const registry = options.registry ?? register;
    if (options.processMetrics !== false && !withProcessMetrics.has(registry)) {
      withProcessMetrics.add(registry);
      collectDefaultMetrics({ register: registry });
    }
    return {
      module: MetricsModule,
      controllers: [MetricsController],
      providers: [{ provide: METRICS_REGISTRY, useValue: registry }],
    };
  }
}
