import {
  BadRequestException,
  type CanActivate,
  type ExecutionContext,
  ForbiddenException,
  HttpException,
  Inject,
  Injectable,
  InternalServerErrorException,
  Logger,
  type OnApplicationBootstrap,
  ServiceUnavailableException,
  UnauthorizedException,
} from '@nestjs/common';
import { describeAccess, InvalidRouteParameterError, resolveAccessChecks } from '../authz/access-check';
import { AccessReviewer } from '../authz/access-reviewer';
import {
  type CallerIdentity,
  type AuthenticationResult,
  AuthenticationUnavailableError,
  TOKEN_AUTHENTICATOR,
  type TokenAuthenticator,
} from '../authn/authentication.types';
import { asksApiServer } from '../authn/token-authenticator.provider';
import { extractToken, tokenHeadersOf } from './bearer-token';
import { type GuardedCall, guardedCallOf, type GuardedRequest } from './guarded-call';
import { handlerWhere } from './handler-transport';
import { httpCall } from './http-call';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import { tokenFingerprint } from '../observability/log-safe';
import { KubernetesApiClient } from '../kube/kubernetes-api.client';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';
import {
  type CallerPolicy,
  isCallerAllowed,
  PolicyConfigurationError,
  RoutePolicies,
  type RoutePolicy,
} from './route-policy';

// The identity the guard established for each call, for `@Caller()`: kept beside the request (HTTP) or the call
// (gRPC), so that the guard adds nothing to Express's, Fastify's or grpc-js's objects.
const callers = new WeakMap<object, CallerIdentity>();

export function setRequestCaller(carrier: object, caller: CallerIdentity): void {
  callers.set(carrier, caller);
}

export function requestCaller(carrier: object): CallerIdentity | undefined {
  return callers.get(carrier);
}

export type { GuardedRequest } from './guarded-call';

/**
 * Lets a request through only with a token that is valid for the route's audience, from a service account the
 * route's allowlist names (if it has one) and that RBAC allows every `@RequireAccess` check of (if it has any). Works
 * as a global `APP_GUARD` or with `@UseGuards`, on HTTP routes and gRPC handlers (grpc-call.ts says how a gRPC call
 * is read and answered).
 *
 * 401: no token, or not a well-formed one. 403: the token is refused, the caller is not allowed, or RBAC denies a
 * check. 400: a route parameter feeding a check is not a Kubernetes name. 503 with Retry-After: no answer could be
 * had (fail closed).
 */
@Injectable()
export class ServiceAccountGuard implements CanActivate, OnApplicationBootstrap {
  protected readonly logger = new Logger('ServiceAccountGuard');
  /** `Retry-After` of a 503, as sent. */
  private readonly retryAfter: string;

  constructor(
    @Inject(RESOLVED_OPTIONS) protected readonly options: ResolvedOptions,
    @Inject(TOKEN_AUTHENTICATOR) protected readonly authenticator: TokenAuthenticator,
    protected readonly policies: RoutePolicies,
    protected readonly accessReviewer: AccessReviewer,
    protected readonly metrics: K8sAuthMetrics,
    private readonly api: KubernetesApiClient,
  ) {
    this.retryAfter = String(options.retryAfterSeconds);
  }

  /**
   * Checks every guarded route's decorators as the app starts, that every route that declares who may call it is
   * guarded, and that the API server can be reached with some credentials: a misconfigured or unguarded route, or a
   * service with no credentials, stops start-up. Not the credentials when a test replaced what would ask the API
   * server: the guard (`overrideGuard`, `overrideProvider`), or the authenticator (and, for `@RequireAccess` routes,
   * the access reviewer).
   */
  onApplicationBootstrap(): void {
    const routes = this.policies.checkAll((guard) => isServiceAccountGuard(guard));
    if (routes.guarded + routes.public > 0 && this.asksApiServer()) this.api.checkConfiguration();
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const call = guardedCallOf(context);
    if (call === httpCall) return this.check(context, call);
    if (!call) return this.otherTransport(context);
    try {
      return await this.check(context, call);
    } catch (err) {
      throw call.refusal(context, err);
    }
  }

  private async check(context: ExecutionContext, call: GuardedCall): Promise<boolean> {
    const policy = this.policyOf(context);
    if (policy.public) return true;
    const request = call.request(context);
    const token = this.readToken(request, context);

    const result = await this.authenticate(token, policy.audiences, context);
    if (!result.accepted) {
      // What the route expects comes from its own decorators, not from the request.
      const expected = result.reason === 'wrong audience' ? ` (the route accepts ${describeAudiences(policy)})` : '';
      this.logger.warn(`refused token ${tokenFingerprint(token)} on ${policy.where}: ${result.reason}${expected}`);
      throw this.refusal(context, 'forbidden', new ForbiddenException(result.reason));
    }
    const caller = result.caller;
    if (
      policy.callers &&
      !isCallerAllowed(policy.callers, { namespace: caller.namespace, name: caller.serviceAccount })
    ) {
      this.logger.warn(
        `refused ${caller.username} (token ${tokenFingerprint(token)}) on ${policy.where}: caller not allowed ` +
          `(the route allows ${describeCallers(policy.callers)})`,
      );
      throw this.refusal(context, 'forbidden', new ForbiddenException('caller not allowed'));
    }
    if (policy.access.length > 0) await this.authorize(policy, caller, request, token, context, call);

    this.metrics.decision('allowed');
    setRequestCaller(call.carrier(context), caller);
    return true;
  }

  /** Kafka, NATS, WebSockets and the like: start-up refuses the decorators there; a guard that reaches one refuses. */
  private otherTransport(context: ExecutionContext): boolean {
    this.logger.error(
      `${handlerWhere(context.getClass(), context.getHandler())} is a ${context.getType()} handler of a transport ` +
        'that ServiceAccountGuard does not guard (it guards HTTP routes and gRPC handlers): the call is refused',
    );
    this.metrics.decision('forbidden');
    return false;
  }

  /**
   * The caller's token, from the headers of the `tokenHeaders` option (`Authorization: Bearer` by default); on a gRPC
   * call, `request.headers` holds those keys of the call's metadata (all of it: `context.switchToRpc().getContext()`).
   * Override to read it elsewhere; throw the result of {@link refusal} to refuse.
   */
  protected readToken(request: GuardedRequest, context: ExecutionContext): string {
    const { tokenHeaders, maxTokenBytes } = this.options;
    const extracted = extractToken(tokenHeadersOf(request.raw ?? request, tokenHeaders), tokenHeaders, maxTokenBytes);
    if (extracted.kind === 'token') return extracted.token;
    const missing = extracted.kind === 'missing';
    this.setHeader(context, 'WWW-Authenticate', missing ? 'Bearer' : 'Bearer error="invalid_request"');
    throw this.refusal(
      context,
      'unauthenticated',
      new UnauthorizedException(missing ? 'token required' : extracted.reason),
    );
  }

  /**
   * The exception a refusal is answered with; `decision` is what the metrics count. Override to answer otherwise
   * (another body, a header); the status should stay. On a gRPC call the HttpException returned becomes the gRPC
   * status of the same meaning (an `RpcException` returned is thrown as it is).
   */
  protected refusal(
    _context: ExecutionContext,
    decision: 'unauthenticated' | 'forbidden' | 'bad_request' | 'unavailable',
    exception: HttpException,
  ): HttpException {
    this.metrics.decision(decision);
    return exception;
  }

  private policyOf(context: ExecutionContext): RoutePolicy {
    try {
      return this.policies.of(context.getClass(), context.getHandler());
    } catch (err) {
      if (err instanceof PolicyConfigurationError) throw this.misconfigured(err);
      throw err;
    }
  }

  private asksApiServer(): boolean {
    if (!this.policies.runsForSomeRoute((guard) => guard instanceof ServiceAccountGuard)) return false;
    return (
      asksApiServer(this.authenticator) ||
      (this.policies.hasAccessChecks() && this.accessReviewer instanceof AccessReviewer)
    );
  }

  /** A route whose decorators cannot be enforced never opens; the details go to the log only. */
  private misconfigured(err: PolicyConfigurationError): HttpException {
    this.logger.error(err.message);
    return new InternalServerErrorException('route is not configured for ServiceAccountGuard');
  }

  private async authenticate(
    token: string,
    audiences: readonly string[],
    context: ExecutionContext,
  ): Promise<AuthenticationResult> {
    try {
      return await this.authenticator.authenticate(token, audiences);
    } catch (err) {
      if (!(err instanceof AuthenticationUnavailableError)) throw err;
      throw this.unavailable(context, 'authentication is unavailable, retry later');
    }
  }

  /** Asks RBAC about every check of the route; returns only if all are allowed. */
  private async authorize(
    policy: RoutePolicy,
    caller: CallerIdentity,
    request: GuardedRequest,
    token: string,
    context: ExecutionContext,
    call: GuardedCall,
  ): Promise<void> {
    let reviews;
    try {
      reviews = resolveAccessChecks(policy.access, request.params, policy.where, call.placeholder);
    } catch (err) {
      if (err instanceof PolicyConfigurationError) throw this.misconfigured(err);
      if (!(err instanceof InvalidRouteParameterError)) throw err;
      this.logger.warn(`refused ${caller.username} (token ${tokenFingerprint(token)}): ${err.message}`);
      throw this.refusal(context, 'bad_request', new BadRequestException(err.message));
    }

    // All at once; a definite denial outweighs a failure of another check, which outweighs allowing.
    const outcomes = await Promise.allSettled(reviews.map((r) => this.accessReviewer.review(caller, r)));
    const denied = outcomes.findIndex((o) => o.status === 'fulfilled' && !o.value.allowed);
    if (denied >= 0) {
      this.logger.warn(
        `refused ${caller.username} (token ${tokenFingerprint(token)}): RBAC denies ${describeAccess(reviews[denied])}`,
      );
      throw this.refusal(context, 'forbidden', new ForbiddenException('access denied by RBAC'));
    }
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) {
      if (!(failed.reason instanceof AuthenticationUnavailableError)) throw failed.reason;
      throw this.unavailable(context, 'authorization is unavailable, retry later');
    }
  }

  private unavailable(context: ExecutionContext, message: string): HttpException {
    this.setHeader(context, 'Retry-After', this.retryAfter);
    return this.refusal(context, 'unavailable', new ServiceUnavailableException(message));
  }

  /** An HTTP header, or a gRPC trailer, of the refusal about to be thrown. */
  private setHeader(context: ExecutionContext, name: string, value: string): void {
    guardedCallOf(context)?.setHeader(context, name, value);
  }
}

function describeAudiences(policy: RoutePolicy): string {
  return policy.audiences.length === 0
    ? 'tokens meant for the API server'
    : `audience(s) ${policy.audiences.join(', ')}`;
}

function describeCallers(callers: CallerPolicy): string {
  const allowed = [];
  if (callers.serviceAccounts?.length) allowed.push(`service account(s) ${callers.serviceAccounts.join(', ')}`);
  if (callers.namespaces?.length) allowed.push(`namespace(s) ${callers.namespaces.join(', ')}`);
  return allowed.join(' and ');
}

/** The guard class, a subclass of it, or an instance of either (as `@UseGuards` and `APP_GUARD` name guards). */
function isServiceAccountGuard(guard: unknown): boolean {
  if (guard instanceof ServiceAccountGuard) return true;
  return (
    typeof guard === 'function' && (guard === ServiceAccountGuard || guard.prototype instanceof ServiceAccountGuard)
  );
}
