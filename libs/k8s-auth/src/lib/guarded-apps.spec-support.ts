import type { INestApplication, INestMicroservice, LoggerService, Provider, Type } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { K8sAuthModule, type K8sAuthModuleOptions } from '../index';
import { type ControlPlane, kubeConfigFor, mintServiceAccountToken, type ServiceAccountRef } from '../testing';
import { freePort, grpcOptions } from './grpc-apps.spec-support';

// What the integration specs share (not part of the library: excluded from its build).

export const API: ServiceAccountRef = { namespace: 'api', name: 'api' };
export const DATA_STORE: ServiceAccountRef = { namespace: 'data-store', name: 'data-store' };
/** The guarded service's own account: the one that asks the API server. */
export const REVIEWER: ServiceAccountRef = { namespace: 'secret-store', name: 'secret-store' };

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A token of `account` for `audiences`, minted through TokenRequest, valid 10 minutes; bound to `pod` if given. */
export const mintToken = (
  cp: ControlPlane,
  account: ServiceAccountRef,
  audiences: string[] = ['secret-store'],
  pod?: { name: string; uid: string },
) =>
  mintServiceAccountToken(cp.kubeConfig, account, {
    audiences,
    expirationSeconds: 600,
    ...(pod ? { boundObject: { kind: 'Pod' as const, ...pod } } : {}),
  }).then((t) => t.token);

/**
 * Nest apps with K8sAuthModule and a spec's controllers, against one control plane, each with its own metrics
 * registry; closed together, with the kubeconfig files written for them.
 */
export class GuardedApps {
  private readonly apps: { close(): Promise<void> }[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'k8s-auth-spec-'));

  constructor(
    private readonly cp: ControlPlane,
    private readonly controllers: Type[],
    private readonly logger: LoggerService,
  ) {}

  /**
   * A kubeconfig file with `account`'s own credentials, as a service in the cluster would have them; addressed to
   * `server` (a proxy in front of the API server) if given.
   */
  async kubeconfigFile(account: ServiceAccountRef, server?: string): Promise<string> {
    const suffix = server ? `-${new URL(server).port}` : '';
    const path = join(this.dir, `${account.namespace}-${account.name}${suffix}.kubeconfig`);
    const config = await kubeConfigFor(this.cp.kubeConfig, account);
    if (server) {
      const { clusters, users, contexts, currentContext } = config;
      config.loadFromOptions({ clusters: clusters.map((c) => ({ ...c, server })), users, contexts, currentContext });
    }
    writeFileSync(path, config.exportConfig());
    return path;
  }

  /**
   * An app with `options`, on Express or Fastify, with the spec's controllers or `controllers`. `listen: true`
   * serves it on a loopback port (real connections); else it is only initialised.
   */
  async boot(
    options: K8sAuthModuleOptions,
    { listen, fastify = false, controllers }: { listen: boolean; fastify?: boolean; controllers?: Type[] },
  ): Promise<INestApplication> {
    const moduleRef = await Test.createTestingModule({
      imports: [K8sAuthModule.forRoot({ metrics: new Registry(), ...options })],
      controllers: controllers ?? this.controllers,
    }).compile();
    const app = fastify
      ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: this.logger })
      : moduleRef.createNestApplication({ logger: this.logger });
    if (listen) await app.listen(0, '127.0.0.1');
    else await app.init();
    this.apps.push(app);
    return app;
  }

  /**
   * A gRPC app serving the spec proto on a loopback port: a microservice alone, or `hybrid`, an HTTP app (listening
   * too) with the microservice connected, inheriting the app's configuration (its APP_GUARD) or not.
   */
  async bootGrpc(
    options: K8sAuthModuleOptions,
    {
      controllers,
      providers = [],
      hybrid,
    }: { controllers: Type[]; providers?: Provider[]; hybrid?: { inheritAppConfig: boolean } },
  ): Promise<{ url: string; app: INestMicroservice | INestApplication }> {
    const moduleRef = await Test.createTestingModule({
      imports: [K8sAuthModule.forRoot({ metrics: new Registry(), ...options })],
      controllers,
      providers,
    }).compile();
    const url = `127.0.0.1:${await freePort()}`;
    if (!hybrid) {
      const app = moduleRef.createNestMicroservice({ ...grpcOptions(url), logger: this.logger });
      this.apps.push(app);
      await app.listen();
      return { url, app };
    }
    const app = moduleRef.createNestApplication({ logger: this.logger });
    this.apps.push(app);
    app.connectMicroservice(grpcOptions(url), { inheritAppConfig: hybrid.inheritAppConfig });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    return { url, app };
  }

  async close(): Promise<void> {
    for (const app of this.apps.splice(0)) await app.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
