import { Controller, type ExecutionContext, Get, HttpException, Injectable, Logger, UseGuards } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { EventPattern, GrpcMethod, GrpcStreamMethod, MessagePattern, Payload, Transport } from '@nestjs/microservices';
import type { Server } from 'node:http';
import { from, type Observable } from 'rxjs';
import request from 'supertest';
import {
  AllowServiceAccounts,
  Audience,
  Caller,
  type CallerIdentity,
  type K8sAuthModuleOptions,
  PublicRoute,
  RequireAccess,
  ServiceAccountGuard,
} from '../../index';
import {
  bindClusterRole,
  type ControlPlane,
  countApiServerRequests,
  createServiceAccount,
  RecordingLogger,
  startControlPlane,
} from '../../testing';
import { bearer, type CallOutcome, SpecClient } from '../grpc-apps.spec-support';
import { API, DATA_STORE, GuardedApps, mintToken, REVIEWER } from '../guarded-apps.spec-support';

// The guard on gRPC methods (unary and server-streaming), in a gRPC-only app and in hybrid apps, against a real
// API server: the same decisions as over HTTP, answered as gRPC statuses.

const OK = 0;
const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;
const UNAVAILABLE = 14;
const UNAUTHENTICATED = 16;

let handlerCalls = 0;

@Controller()
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class SecretsGrpcController {
  @GrpcMethod('Secrets', 'Read')
  read(@Payload() message: { name?: string }, @Caller() caller: CallerIdentity) {
    handlerCalls++;
    return { name: message.name, value: 's3cr3t', caller: caller.username };
  }

  @GrpcMethod('Secrets', 'Watch')
  watch(@Payload() message: { name?: string }, @Caller() caller: CallerIdentity): Observable<object> {
    handlerCalls++;
    return from([1, 2, 3].map((n) => ({ name: `${message.name}-${n}`, value: 'v', caller: caller.username })));
  }

  /** RBAC alone decides, about the object the message names: only system:auth-delegator may create tokenreviews. */
  @GrpcMethod('Secrets', 'Checked')
  @AllowServiceAccounts('api:api', 'data-store:data-store')
  @RequireAccess({ verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews', name: { param: 'name' } })
  checked(@Payload() message: { name: string }) {
    handlerCalls++;
    return { name: message.name, value: 'checked' };
  }

  @GrpcMethod('Secrets', 'Health')
  @PublicRoute()
  health(@Caller() caller: CallerIdentity | undefined) {
    return { value: 'ok', caller: caller?.username ?? '' };
  }
}

/** The same, guarded by @UseGuards: covered whatever the microservice inherits. */
@Controller()
@UseGuards(ServiceAccountGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class LocallyGuardedGrpcController {
  @GrpcMethod('Secrets', 'Read')
  read(@Payload() message: { name?: string }, @Caller() caller: CallerIdentity) {
    handlerCalls++;
    return { name: message.name, value: 's3cr3t', caller: caller.username };
  }
}

@Controller('http')
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class HttpController {
  @Get()
  read(@Caller() caller: CallerIdentity) {
    return { caller: caller.username };
  }
}

@Controller()
class KafkaController {
  @MessagePattern('secrets.read', Transport.KAFKA)
  @AllowServiceAccounts('api:api')
  read() {
    return 'read';
  }

  @EventPattern('secrets.changed')
  @PublicRoute()
  changed() {
    return undefined;
  }
}

/** A subclass that answers refusals its own way: still a gRPC status, of the status it gives. */
@Injectable()
class TeapotGuard extends ServiceAccountGuard {
  protected override refusal(
    context: ExecutionContext,
    decision: 'unauthenticated' | 'forbidden' | 'bad_request' | 'unavailable',
    exception: HttpException,
  ): HttpException {
    super.refusal(context, decision, exception);
    return new HttpException(`refused here: ${exception.message}`, exception.getStatus());
  }
}

@Controller()
@UseGuards(TeapotGuard)
@Audience('secret-store')
@AllowServiceAccounts('api:api')
class SubclassGuardedGrpcController {
  @GrpcMethod('Secrets', 'Read')
  read() {
    return { value: 'subclass' };
  }
}

/** A placeholder on a request-streaming method: there is no one message to read it from. */
@Controller()
@Audience('secret-store')
@UseGuards(ServiceAccountGuard)
class StreamingPlaceholderController {
  @GrpcStreamMethod('Secrets', 'Watch')
  @RequireAccess({ verb: 'get', resource: 'secrets', namespace: 'x', name: { param: 'name' } })
  watch() {
    return from([]);
  }
}

const APP_GUARD_PROVIDER = { provide: APP_GUARD, useExisting: ServiceAccountGuard };

describe('ServiceAccountGuard on gRPC methods, against a real API server', () => {
  let cp: ControlPlane;
  let apps: GuardedApps;
  const logger = new RecordingLogger();
  const clients: SpecClient[] = [];
  let kubeconfig: string;
  let apiToken: string;
  let dataStoreToken: string;

  const clientOf = (url: string) => {
    const client = new SpecClient(url);
    clients.push(client);
    return client;
  };
  const grpcOnly = async (options: Partial<K8sAuthModuleOptions> = {}) =>
    clientOf(
      (
        await apps.bootGrpc(
          { kubeconfig, ...options },
          { controllers: [SecretsGrpcController], providers: [APP_GUARD_PROVIDER] },
        )
      ).url,
    );
  const expectStatus = (outcome: CallOutcome, code: number, details?: string) => {
    expect({ code: outcome.code, details: outcome.details }).toEqual({ code, details: details ?? outcome.details });
  };

  let client: SpecClient;

  beforeAll(async () => {
    cp = await startControlPlane();
    apps = new GuardedApps(cp, [], logger);
    for (const account of [API, DATA_STORE, REVIEWER]) await createServiceAccount(cp.kubeConfig, account);
    await bindClusterRole(cp.kubeConfig, REVIEWER, 'system:auth-delegator');
    await bindClusterRole(cp.kubeConfig, API, 'system:auth-delegator');
    kubeconfig = await apps.kubeconfigFile(REVIEWER);
    apiToken = await mintToken(cp, API);
    dataStoreToken = await mintToken(cp, DATA_STORE);
    Logger.overrideLogger(logger);
    client = await grpcOnly({ cacheTtlMs: 1000, tokenHeaders: ['authorization', 'x-client-id'] });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await apps?.close();
    await cp?.stop();
  });

  beforeEach(() => {
    handlerCalls = 0;
  });

  describe('in a gRPC-only app, under an APP_GUARD', () => {
    it('lets the allowed service account call a unary method, and tells it who called', async () => {
      const outcome = await client.unary('Read', { name: 'db' }, bearer(apiToken));
      expectStatus(outcome, OK);
      expect(outcome.messages).toEqual([{ name: 'db', value: 's3cr3t', caller: 'system:serviceaccount:api:api' }]);
      expect(handlerCalls).toBe(1);
    });

    it('streams to the allowed caller, and refuses another before the first message', async () => {
      const allowed = await client.stream({ name: 'db' }, bearer(apiToken));
      expectStatus(allowed, OK);
      expect(allowed.messages.map((m) => m.name)).toEqual(['db-1', 'db-2', 'db-3']);
      const refused = await client.stream({ name: 'db' }, bearer(dataStoreToken));
      expectStatus(refused, PERMISSION_DENIED, 'caller not allowed');
      expect(refused.messages).toEqual([]);
      expect(handlerCalls).toBe(1);
    });

    it.each([
      ['another service account', () => mintToken(cp, DATA_STORE), 'caller not allowed'],
      ['a token for another audience', () => mintToken(cp, API, ['other']), 'wrong audience'],
    ])('answers PERMISSION_DENIED to %s', async (_what, token, reason) => {
      expectStatus(await client.unary('Read', { name: 'db' }, bearer(await token())), PERMISSION_DENIED, reason);
      expect(handlerCalls).toBe(0);
    });

    it('answers UNAUTHENTICATED without a token, with a www-authenticate trailer', async () => {
      const outcome = await client.unary('Read', { name: 'db' });
      expectStatus(outcome, UNAUTHENTICATED, 'token required');
      expect(outcome.trailers['www-authenticate']).toEqual(['Bearer']);
      expect(handlerCalls).toBe(0);
    });

    it.each([
      ['not a JWT', { authorization: 'Bearer garbage' }, /not a JWT/],
      ['another scheme', { authorization: 'Basic YWJjOmRlZg==' }, /scheme is not Bearer/],
      // grpc-js clients send one authorization value at most; a custom key may be sent twice.
      ['two x-client-id values', () => ({ 'x-client-id': [apiToken, apiToken] }), /several values/],
      ['the token in two headers', () => ({ ...bearer(apiToken), 'x-client-id': apiToken }), /more than one header/],
    ])('answers UNAUTHENTICATED to a malformed token (%s), as HTTP does, without a review', async (_what, h, why) => {
      const headers = typeof h === 'function' ? h() : h;
      const before = await countApiServerRequests(cp.kubeConfig, 'tokenreviews');
      const outcome = await client.unary('Read', { name: 'db' }, headers);
      expect(outcome.code).toBe(UNAUTHENTICATED);
      expect(outcome.details).toMatch(why);
      expect(outcome.trailers['www-authenticate']).toEqual(['Bearer error="invalid_request"']);
      expect(await countApiServerRequests(cp.kubeConfig, 'tokenreviews')).toBe(before);
    });

    it('reads the token from the configured tokenHeaders', async () => {
      const bare = await grpcOnly({ tokenHeaders: ['x-client-id'] });
      const outcome = await bare.unary('Read', { name: 'db' }, { 'x-client-id': apiToken });
      expect(outcome.messages[0]?.caller).toBe('system:serviceaccount:api:api');
      expectStatus(await bare.unary('Read', { name: 'db' }, bearer(apiToken)), UNAUTHENTICATED, 'token required');
    });

    it('serves a @PublicRoute() method without a token; @Caller() is undefined there', async () => {
      const outcome = await client.unary('Health', {});
      expectStatus(outcome, OK);
      expect(outcome.messages).toEqual([{ value: 'ok', caller: '' }]);
    });

    it("asks RBAC about the object a @RequireAccess placeholder names in the message's field", async () => {
      const allowed = await client.unary('Checked', { name: 'db-password' }, bearer(apiToken));
      expectStatus(allowed, OK);
      expect(allowed.messages).toEqual([{ name: 'db-password', value: 'checked' }]);
      const denied = await client.unary('Checked', { name: 'db-password' }, bearer(dataStoreToken));
      expectStatus(denied, PERMISSION_DENIED, 'access denied by RBAC');
      expect(handlerCalls).toBe(1);
    });

    it.each([
      ['not a Kubernetes name', { name: 'Not A Name!' }],
      ['missing', {}],
    ])('answers INVALID_ARGUMENT when the field a placeholder reads is %s, without a review', async (_w, message) => {
      const before = await countApiServerRequests(cp.kubeConfig, 'subjectaccessreviews');
      const outcome = await client.unary('Checked', message, bearer(apiToken));
      expectStatus(outcome, INVALID_ARGUMENT, 'request field "name" is missing or not a valid name');
      expect(await countApiServerRequests(cp.kubeConfig, 'subjectaccessreviews')).toBe(before);
      expect(handlerCalls).toBe(0);
    });

    it('answers UNAVAILABLE with a retry-after trailer while the API server is down; cached callers pass', async () => {
      const quick = await grpcOnly({ requestTimeoutMs: 2000 });
      const fresh = await mintToken(cp, API);
      const other = await mintToken(cp, API);
      expectStatus(await quick.unary('Read', { name: 'db' }, bearer(fresh)), OK);
      await cp.stopApiServer();
      try {
        const unary = await quick.unary('Read', { name: 'db' }, bearer(other));
        expectStatus(unary, UNAVAILABLE, 'authentication is unavailable, retry later');
        expect(unary.trailers['retry-after']).toEqual(['5']);
        const stream = await quick.stream({ name: 'db' }, bearer(other));
        expectStatus(stream, UNAVAILABLE);
        expect(stream.trailers['retry-after']).toEqual(['5']);
        expectStatus(await quick.unary('Read', { name: 'db' }, bearer(fresh)), OK);
      } finally {
        await cp.startApiServer();
      }
      expectStatus(await quick.unary('Read', { name: 'db' }, bearer(other)), OK);
    });

    it('logs refusals with the method, never the token', async () => {
      await client.unary('Read', { name: 'db' }, bearer(dataStoreToken));
      expect(logger.text()).toContain(
        'on SecretsGrpcController.read: caller not allowed (the route allows service account(s) api:api)',
      );
      for (const part of dataStoreToken.split('.')) expect(logger.text()).not.toContain(part.slice(0, 16));
    });
  });

  describe('in a hybrid app (HTTP and connectMicroservice)', () => {
    it('guards gRPC methods under an APP_GUARD when the microservice inherits the app configuration', async () => {
      const { url, app } = await apps.bootGrpc(
        { kubeconfig, unguardedRoutes: 'warn' },
        {
          controllers: [SecretsGrpcController, HttpController],
          providers: [APP_GUARD_PROVIDER],
          hybrid: { inheritAppConfig: true },
        },
      );
      const hybrid = clientOf(url);
      expectStatus(await hybrid.unary('Read', { name: 'db' }), UNAUTHENTICATED, 'token required');
      expectStatus(await hybrid.unary('Read', { name: 'db' }, bearer(dataStoreToken)), PERMISSION_DENIED);
      const ok = await hybrid.unary('Read', { name: 'db' }, bearer(apiToken));
      expect(ok.messages[0]?.caller).toBe('system:serviceaccount:api:api');
      const server = (app as { getHttpServer(): Server }).getHttpServer();
      await request(server).get('/http').expect(401);
      await request(server).get('/http').set(bearer(apiToken)).expect(200, { caller: 'system:serviceaccount:api:api' });
    });

    it('stops start-up when only an APP_GUARD may guard gRPC methods that declare callers, saying why', async () => {
      const started = apps.bootGrpc(
        { kubeconfig },
        {
          controllers: [SecretsGrpcController, HttpController],
          providers: [APP_GUARD_PROVIDER],
          hybrid: { inheritAppConfig: false },
        },
      );
      await expect(started).rejects.toThrow(
        /3 gRPC method\(s\) declare who may call them, but only an APP_GUARD may guard them:\n- \[gRPC Secrets\/Read\] SecretsGrpcController\.read\n.*inheritAppConfig: true/s,
      );
    });

    it("with unguardedRoutes: 'warn', starts; without inheritAppConfig the APP_GUARD does not reach gRPC", async () => {
      const { url } = await apps.bootGrpc(
        { kubeconfig, unguardedRoutes: 'warn' },
        {
          controllers: [SecretsGrpcController, HttpController],
          providers: [APP_GUARD_PROVIDER],
          hybrid: { inheritAppConfig: false },
        },
      );
      expect(logger.text()).toContain('- [gRPC Secrets/Read] SecretsGrpcController.read');
      // What the warning is about: the method is open, and @Caller() says no guard ran.
      const open = await clientOf(url).unary('Read', { name: 'db' });
      expect(open.code).not.toBe(OK);
      expect(logger.text()).toContain('@Caller() on SecretsGrpcController.read: the route is not guarded');
      expect(handlerCalls).toBe(0);
    });

    it('guards gRPC methods with @UseGuards whatever the microservice inherits', async () => {
      const { url } = await apps.bootGrpc(
        { kubeconfig },
        { controllers: [LocallyGuardedGrpcController], hybrid: { inheritAppConfig: false } },
      );
      const hybrid = clientOf(url);
      expectStatus(await hybrid.unary('Read', { name: 'db' }), UNAUTHENTICATED);
      expectStatus(await hybrid.unary('Read', { name: 'db' }, bearer(dataStoreToken)), PERMISSION_DENIED);
      expect((await hybrid.unary('Read', { name: 'db' }, bearer(apiToken))).messages[0]?.caller).toBe(
        'system:serviceaccount:api:api',
      );
    });
  });

  it("keeps a subclass's refusal() working: its message, the status of the exception it returns", async () => {
    const { url } = await apps.bootGrpc({ kubeconfig }, { controllers: [SubclassGuardedGrpcController] });
    const subclassed = clientOf(url);
    expectStatus(await subclassed.unary('Read', {}), UNAUTHENTICATED, 'refused here: token required');
    expectStatus(
      await subclassed.unary('Read', {}, bearer(dataStoreToken)),
      PERMISSION_DENIED,
      'refused here: caller not allowed',
    );
    expect((await subclassed.unary('Read', {}, bearer(apiToken))).messages).toEqual([{ value: 'subclass' }]);
  });

  it('stops start-up at a @RequireAccess placeholder on a request-streaming method', async () => {
    await expect(apps.bootGrpc({ kubeconfig }, { controllers: [StreamingPlaceholderController] })).rejects.toThrow(
      'StreamingPlaceholderController.watch: @RequireAccess reads the request field "name", but a request-streaming gRPC method has no single request message',
    );
  });

  it("stops start-up at handlers of other transports that carry the guard's decorators", async () => {
    const started = apps.bootGrpc({ kubeconfig }, { controllers: [SecretsGrpcController, KafkaController] });
    await expect(started).rejects.toThrow(
      '2 handler(s) of a transport that ServiceAccountGuard does not guard carry its decorators (it guards HTTP ' +
        'routes and gRPC methods only):\n' +
        '- [@MessagePattern("secrets.read") on KAFKA] KafkaController.read\n' +
        '- [@EventPattern("secrets.changed") on any transport] KafkaController.changed\n',
    );
  });
});
