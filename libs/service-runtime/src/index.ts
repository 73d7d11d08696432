export { parseListenAddress } from './lib/listen-address';
export type { ListenAddress } from './lib/listen-address';
export { runService, logLevels } from './lib/run-service';
export { serviceAdapter } from './lib/service-adapter';
export { HealthModule } from './lib/health.module';
export type { ReadinessCheck } from './lib/health.module';
export { MetricsModule } from './lib/metrics.module';
export { drainable } from './lib/graceful-shutdown';
export { RouteNotFoundFilter } from './lib/route-not-found.filter';
