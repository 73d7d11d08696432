export { parseListenAddress } from './lib/listen-address';
export type { ListenAddress } from './lib/listen-address';
export { runService, logLevels } from './lib/run-service';
export { HealthModule } from './lib/health.module';
export type { ReadinessCheck } from './lib/health.module';
