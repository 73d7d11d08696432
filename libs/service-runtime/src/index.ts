export { parseListenAddress } from './lib/listen-address';
export type { ListenAddress } from './lib/listen-address';
export { runService, logLevels } from './lib/run-service';
export { HealthModule } from './lib/health.module';
export type { ReadinessCheck } from './lib/health.module';
export { drainable } from './lib/graceful-shutdown';
export { RouteNotFoundFilter } from './lib/route-not-found.filter';
