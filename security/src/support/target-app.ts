import { Controller, Get, type INestApplication, type LoggerService } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { createServer, type Server } from 'node:http';
import { Registry } from 'prom-client';
import {
  AllowServiceAccounts,
  Audience,
  Caller,
  type CallerIdentity,
  K8sAuthModule,
  ServiceAccountGuard,
} from '@k8s-auth/nestjs';

/** How often each handler of the target ran: an attack must never move these. */
export const handlerCalls = { guarded: 0, tenant: 0, mutate: 0, whoami: 0, dataStoreOnly: 0, inherited: 0 };

/** What the mutating handler saw: the identity before and after, and what each attempt did. */
export interface MutationReport {
  before: CallerIdentity;
  after: CallerIdentity;
  attempts: Record<string, string>;
}

/** The identity as a handler in plain JavaScript (or one that casts) sees it: readonly types bind nobody. */
interface WritableIdentity {
  username: string;
  namespace: string;
  serviceAccount: string;
  groups: string[];
  audiences: string[];
  podName?: string;
}

/** Runs one mutation: `threw <error name>` (a frozen identity), `no effect`, or `changed` it. */
function attempt(caller: CallerIdentity, mutate: (caller: WritableIdentity) => void): string {
  const before = JSON.stringify(caller);
  try {
    mutate(caller as unknown as WritableIdentity);
  } catch (err) {
    return `threw ${(err as Error).name}`;
  }
  return JSON.stringify(caller) === before ? 'no effect' : 'changed';
}

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

  /** A handler that tries to make api:api's identity data-store:data-store's, with more groups and audiences. */
  @Get('caller/mutate')
  @AllowServiceAccounts('api:api')
  mutate(@Caller() caller: CallerIdentity): MutationReport {
    handlerCalls.mutate++;
    const before = structuredClone(caller);
    const attempts = {
      'groups.push': attempt(caller, (c) => c.groups.push('system:masters')),
      namespace: attempt(caller, (c) => (c.namespace = 'data-store')),
      serviceAccount: attempt(caller, (c) => (c.serviceAccount = 'data-store')),
      username: attempt(caller, (c) => (c.username = 'system:serviceaccount:data-store:data-store')),
      'audiences.push': attempt(caller, (c) => c.audiences.push('data-store')),
      podName: attempt(caller, (c) => (c.podName = 'data-store-0')),
    };
    return { before, after: structuredClone(caller), attempts };
  }

  /** The identity a later request is given, whole. */
  @Get('caller/whoami')
  @AllowServiceAccounts('api:api')
  whoami(@Caller() caller: CallerIdentity): CallerIdentity {
    handlerCalls.whoami++;
    return caller;
  }

  /** Decided by the identity's namespace and name: api:api gets in only if its cached identity was rewritten. */
  @Get('data-store-only')
  @AllowServiceAccounts('data-store:data-store')
  dataStoreOnly(@Caller() caller: CallerIdentity) {
    handlerCalls.dataStoreOnly++;
    return { for: caller.username };
  }
}

/**
 * One handler, inherited by two controllers with different policies: Nest routes both to the same
 * function, and a policy kept per handler function alone serves whichever controller is asked first.
 */
class InheritedBase {
  @Get('x')
  x(@Caller() caller: CallerIdentity) {
    handlerCalls.inherited++;
    return { controller: this.constructor.name, for: caller.username };
  }
}

/** api:api with a token for `secret-store`. */
@Controller('inherited-api')
@AllowServiceAccounts('api:api')
@Audience('secret-store')
class InheritedForApi extends InheritedBase {}

/** data-store:data-store with a token for `data-store`: another allowlist and another audience. */
@Controller('inherited-data-store')
@AllowServiceAccounts('data-store:data-store')
@Audience('data-store')
class InheritedForDataStore extends InheritedBase {}

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
    controllers: [TargetController, InheritedForApi, InheritedForDataStore],
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
