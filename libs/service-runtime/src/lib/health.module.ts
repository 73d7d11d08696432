import { Controller, type DynamicModule, Get, Inject, Module, type Provider } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthIndicatorResult, TerminusModule } from '@nestjs/terminus';
import { PublicRoute } from '@k8s-auth/nestjs';

/** A readiness check: resolves to an indicator result (`up` or `down`). */
export type ReadinessCheck = () => HealthIndicatorResult | Promise<HealthIndicatorResult>;

const READINESS_CHECKS = Symbol('READINESS_CHECKS');

/** `/healthz` (liveness: the process answers) and `/readyz` (readiness: the checks pass); no token needed. */
@Controller()
@PublicRoute()
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    @Inject(READINESS_CHECKS) private readonly checks: ReadinessCheck[],
  ) {}

  @Get('healthz')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  @Get('readyz')
  @HealthCheck()
  ready() {
    return this.health.check(this.checks);
  }
}

@Module({})
export class HealthModule {
  /** `readiness` builds the checks from injected providers, like a `useFactory`. */
  static forRoot(
    readiness: Omit<Extract<Provider, { useFactory: unknown }>, 'provide'> = { useFactory: () => [] },
  ): DynamicModule {
    return {
      module: HealthModule,
      imports: [TerminusModule],
      controllers: [HealthController],
      providers: [{ ...readiness, provide: READINESS_CHECKS }],
    };
  }
}
