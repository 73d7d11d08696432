import { Controller, Get, type INestApplication, type LoggerService } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { createServer, type Server } from 'node:http';
import { Registry } from 'prom-client';
import {
  AllowServiceAccounts,
  Caller,
  type CallerIdentity,
  K8sAuthModule,
  ServiceAccountGuard,
} from '@k8s-auth/nestjs';

/** How often each handler of the target ran: an attack must never move these. */
export const handlerCalls = { guarded: 0, tenant: 0 };

@Controller()
class TargetController {
  /** Like the secret store's `GET /`: only api:api, with a token for the audience `secret-store`. */
  @Get('guarded')
  @AllowServiceAccounts('api:api')
  guarded(@Caller() caller: CallerIdentity) {
    handlerCalls.guarded++;
    return { for: caller.username };
  }

  /** For service accounts and pods the attacks delete: tenant:worker (pod-bound) and tenant:rebuilt. */
  @Get('tenant')
  @AllowServiceAccounts('tenant:worker', 'tenant:rebuilt')
  tenant(@Caller() caller: CallerIdentity) {
    handlerCalls.tenant++;
    return { for: caller.username };
  }
}

export interface TargetApp {
  app: INestApplication;
  port: number;
  url: string;
  metrics: Registry;
  close(): Promise<void>;
}

export interface TargetOptions {
  kubeconfig: string;
  logger: LoggerService;
  cacheTtlMs: number;
  negativeCacheTtlMs: number;
}

/**
 * The guard in-process, behind an HTTP server that lets through what Node's strict parser would
 * refuse before any guard runs (control characters: `insecureHTTPParser`; 64 KiB headers: a large
 * `maxHeaderSize`), as a lenient proxy in front of a service might. So the guard's own defences are
 * tested, not only Node's. Short cache TTLs, so that revocations show within the suite's time.
 */
export async function startTargetApp(options: TargetOptions): Promise<TargetApp> {
  const metrics = new Registry();
  const moduleRef = await Test.createTestingModule({
    imports: [
      K8sAuthModule.forRoot({
        kubeconfig: options.kubeconfig,
        audiences: ['secret-store'],
        tokenHeaders: ['authorization', 'x-client-id'],
        cacheTtlMs: options.cacheTtlMs,
        negativeCacheTtlMs: options.negativeCacheTtlMs,
        metrics,
      }),
    ],
    controllers: [TargetController],
    providers: [{ provide: APP_GUARD, useExisting: ServiceAccountGuard }],
  }).compile();
  const adapter = new ExpressAdapter();
  const app = moduleRef.createNestApplication(adapter, { logger: options.logger });
  await app.init();
  const server: Server = createServer({ insecureHTTPParser: true, maxHeaderSize: 256 * 1024 }, adapter.getInstance());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    app,
    port,
    url: `http://127.0.0.1:${port}`,
    metrics,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await app.close();
    },
  };
}
