import {
  BadRequestException,
  type CanActivate,
  type ExecutionContext,
  ForbiddenException,
  Inject,
  Injectable,
  InternalServerErrorException,
  Logger,
  ServiceUnavailableException,
  UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  type AccessCheck,
  describeAccess,
  InvalidRouteParameterError,
  resolveAccessChecks,
  validateAccessChecks,
} from './access-check';
import { AccessReviewer } from './access-reviewer';
import { extractToken, type TokenHeader, tokenFingerprint, tokenHeadersOf } from './bearer-token';
import { ConnectionMemo } from './connection-memo';
import {
  type CallerPolicy,
  isCallerAllowed,
  isEmptyCallerPolicy,
  PolicyConfigurationError,
  validateCallerPolicy,
} from './caller-policy';
import {
  ALLOW_NAMESPACES_KEY,
  ALLOW_SERVICE_ACCOUNTS_KEY,
  API_SERVER_AUDIENCE,
  AUDIENCE_KEY,
  CALLER_PARAM_KEY,
  DEFAULTS,
  PUBLIC_ROUTE_KEY,
  REQUIRE_ACCESS_KEY,
} from './k8s-auth.constants';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import { MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import { setRequestCaller } from './request-callers';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { TokenAuthenticator } from './token-authenticator';
import { type CallerIdentity, type ReviewResult, ReviewUnavailableError } from './token-reviewer';

/** How long a connection's last accepted token is reused without a cache lookup (see ConnectionMemo). */
const CONNECTION_MEMO_MS = 1_000;

interface RoutePolicy {
  where: string;
  audiences: string[];
  /** Undefined: the route has no allowlist, RBAC alone decides. */
  callers?: CallerPolicy;
  /** `@RequireAccess` checks of the controller and the route; all must be allowed. */
  access: AccessCheck[];
  /** Whether the handler reads `@Caller()`: the identity is kept for the request only then. */
  readsCaller: boolean;
}

type GuardedRequest = {
  headers: Record<string, string | string[] | undefined>;
  headersDistinct?: Record<string, string[] | undefined>;
  params?: Record<string, unknown>;
  /** The connection (Node's socket): what the connection memo is kept on. */
  socket?: object;
  /** `1.1` or `1.0` (Node's `IncomingMessage.httpVersion`). */
  httpVersion?: string;
};

type RouteHandler = ReturnType<ExecutionContext['getHandler']>;
type Controller = ReturnType<ExecutionContext['getClass']>;

interface HeaderWriter {
  setHeader?(name: string, value: string): void;
  header?(name: string, value: string): void;
}

/**
 * Lets a request through only with a token the API server accepts for the route's audience, from a
 * service account the route's allowlist names (if it has one) and that RBAC allows every
 * `@RequireAccess` check of (if it has any). Works as a global `APP_GUARD` or with `@UseGuards`.
 *
 * 401: no token, or not a well-formed one. 403: the API server refused it, the caller is not
 * allowed, or RBAC denied a check. 400: a route parameter feeding a check is not a Kubernetes name.
 * 503 with Retry-After: the API server could not answer (fail closed).
 */
@Injectable()
export class ServiceAccountGuard implements CanActivate {
  private readonly logger = new Logger('ServiceAccountGuard');
  private readonly policies = new WeakMap<RouteHandler, RoutePolicy>();
  private readonly tokenHeaders: readonly TokenHeader[];
  private readonly maxTokenBytes: number;
  private readonly retryAfter: string;
  private readonly memo: ConnectionMemo;

  constructor(
    @Inject(MODULE_OPTIONS_TOKEN) private readonly options: K8sAuthModuleOptions,
    private readonly reflector: Reflector,
    private readonly authenticator: TokenAuthenticator,
    private readonly accessReviewer: AccessReviewer,
    private readonly metrics: K8sAuthMetrics,
  ) {
    this.tokenHeaders = options.tokenHeaders ?? DEFAULTS.tokenHeaders;
    this.maxTokenBytes = options.maxTokenBytes ?? DEFAULTS.maxTokenBytes;
    this.retryAfter = String(options.retryAfterSeconds ?? DEFAULTS.retryAfterSeconds);
    // A cache turned off or shortened is never outlived by the memo.
    const cacheTtlMs = options.cacheTtlMs ?? DEFAULTS.cacheTtlMs;
    const caching = (options.maxCacheEntries ?? DEFAULTS.maxCacheEntries) > 0;
    this.memo = new ConnectionMemo(caching ? Math.min(CONNECTION_MEMO_MS, cacheTtlMs) : 0);
  }

  /**
   * `true` without a promise when a connection repeats its accepted token on a route without RBAC checks (most
   * requests between services): Nest then skips awaiting the guard. Every refusal is a rejected promise.
   */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    try {
      return this.decide(context);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private decide(context: ExecutionContext): boolean | Promise<boolean> {
    const handler = context.getHandler();
    const controller = context.getClass();
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE_KEY, [handler, controller])) return true;

    const policy = this.policyOf(handler, controller);
    const http = context.switchToHttp();
    const request = http.getRequest<GuardedRequest>();
    const response = http.getResponse<HeaderWriter>();

    const extracted = extractToken(tokenHeadersOf(request, this.tokenHeaders), this.tokenHeaders, this.maxTokenBytes);
    if (extracted.kind !== 'token') {
      const error = extracted.kind === 'missing' ? '' : ' error="invalid_request"';
      setHeader(response, 'WWW-Authenticate', `Bearer${error}`);
      this.metrics.decision('unauthenticated');
      throw new UnauthorizedException(extracted.kind === 'missing' ? 'token required' : extracted.reason);
    }

    const remembered = this.memo.recall(request.socket, extracted.token, policy.audiences);
    if (remembered) return this.admit(policy, remembered, extracted.token, request, response);
    return this.reviewThenAdmit(policy, extracted.token, request, response);
  }

  private async reviewThenAdmit(
    policy: RoutePolicy,
    token: string,
    request: GuardedRequest,
    response: HeaderWriter,
  ): Promise<boolean> {
    let result: ReviewResult;
    try {
      result = await this.authenticator.authenticate(token, policy.audiences);
    } catch (err) {
      if (!(err instanceof ReviewUnavailableError)) throw err;
      setHeader(response, 'Retry-After', this.retryAfter);
      this.metrics.decision('unavailable');
      throw new ServiceUnavailableException('authentication is unavailable, retry later');
    }
    if (result.accepted && !closesAfter(request)) this.memo.remember(request.socket, token, policy.audiences, result);
    return this.admit(policy, result, token, request, response);
  }

  /** Applies the route's allowlist and RBAC checks to an authenticated (or refused) token; throws to refuse. */
  private admit(
    policy: RoutePolicy,
    result: ReviewResult,
    token: string,
    request: GuardedRequest,
    response: HeaderWriter,
  ): boolean | Promise<boolean> {
    // The token's fingerprint is computed only for a line that is logged: most requests log nothing.
    if (!result.accepted) {
      this.logger.warn(`refused token ${tokenFingerprint(token)}: ${result.reason}`);
      this.metrics.decision('forbidden');
      throw new ForbiddenException(result.reason);
    }
    const caller: CallerIdentity = result.caller;
    if (
      policy.callers &&
      !isCallerAllowed(policy.callers, { namespace: caller.namespace, name: caller.serviceAccount })
    ) {
      this.logger.warn(`refused ${caller.username} (token ${tokenFingerprint(token)}): caller not allowed`);
      this.metrics.decision('forbidden');
      throw new ForbiddenException('caller not allowed');
    }
    if (policy.access.length === 0) return this.allow(policy, caller, request, token);
    return this.authorize(policy, caller, request, response, token).then(() =>
      this.allow(policy, caller, request, token),
    );
  }

  private allow(policy: RoutePolicy, caller: CallerIdentity, request: GuardedRequest, token: string): true {
    if (debugEnabled(this.logger)) {
      this.logger.debug(`allowed ${caller.username} pod=${caller.podName ?? '-'} token ${tokenFingerprint(token)}`);
    }
    this.metrics.decision('allowed');
    if (policy.readsCaller) setRequestCaller(request, caller);
    return true;
  }

  /** Asks RBAC about every check of the route; returns only if all are allowed. */
  private async authorize(
    policy: RoutePolicy,
    caller: CallerIdentity,
    request: GuardedRequest,
    response: HeaderWriter,
    token: string,
  ): Promise<void> {
    let reviews;
    try {
      reviews = resolveAccessChecks(policy.access, request.params, policy.where);
    } catch (err) {
      if (err instanceof InvalidRouteParameterError) {
        this.logger.warn(`refused ${caller.username} (token ${tokenFingerprint(token)}): ${err.message}`);
        this.metrics.decision('bad_request');
        throw new BadRequestException(err.message);
      }
      if (!(err instanceof PolicyConfigurationError)) throw err;
      this.logger.error(err.message);
      throw new InternalServerErrorException(`route ${policy.where} is not configured for ServiceAccountGuard`);
    }

    // All at once; a definite denial outweighs a failure of another check, which outweighs allowing.
    const outcomes = await Promise.allSettled(reviews.map((r) => this.accessReviewer.review(caller, r)));
    const denied = outcomes.findIndex((o) => o.status === 'fulfilled' && !o.value.allowed);
    if (denied >= 0) {
      this.logger.warn(
        `refused ${caller.username} (token ${tokenFingerprint(token)}): RBAC denies ${describeAccess(reviews[denied])}`,
      );
      this.metrics.decision('forbidden');
      throw new ForbiddenException('access denied by RBAC');
    }
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) {
      if (!(failed.reason instanceof ReviewUnavailableError)) throw failed.reason;
      setHeader(response, 'Retry-After', this.retryAfter);
      this.metrics.decision('unavailable');
      throw new ServiceUnavailableException('authorization is unavailable, retry later');
    }
  }

  /** Reads and checks a route's decorators once; a route without a complete policy never opens. */
  private policyOf(handler: RouteHandler, controller: Controller): RoutePolicy {
    const known = this.policies.get(handler);
    if (known) return known;
    const where = `${controller.name}.${handler.name}`;
    try {
      const policy = this.readPolicy(handler, controller, where);
      this.policies.set(handler, policy);
      return policy;
    } catch (err) {
      if (!(err instanceof PolicyConfigurationError)) throw err;
      this.logger.error(err.message);
      throw new InternalServerErrorException(`route ${where} is not configured for ServiceAccountGuard`);
    }
  }

  private readPolicy(handler: RouteHandler, controller: Controller, where: string): RoutePolicy {
    const fromOptions = this.options.audiences;
    const declared = this.reflector.getAllAndOverride<string[] | undefined>(AUDIENCE_KEY, [handler, controller]);
    if (!declared && !fromOptions) {
      throw new PolicyConfigurationError(
        `${where} is guarded by ServiceAccountGuard but names no audience: add @Audience('<this service>') ` +
          "or the module option 'audiences'",
      );
    }
    const audiences = declared ?? (fromOptions === API_SERVER_AUDIENCE ? [] : [...(fromOptions ?? [])]);
    if (fromOptions !== API_SERVER_AUDIENCE && audiences.length === 0) {
      throw new PolicyConfigurationError(`${where}: the audience list is empty`);
    }

    // RBAC checks add up: the controller's and the route's must all be allowed.
    const declaredChecks = [...this.checksOn(controller, where), ...this.checksOn(handler, where)];
    const access = validateAccessChecks(declaredChecks, where);

    // A route that declares any allowlist replaces the controller's allowlists as a whole. With RBAC
    // checks, no allowlist at all is fine: RBAC alone decides.
    const onRoute = this.callersOn(handler);
    const callers = onRoute.serviceAccounts || onRoute.namespaces ? onRoute : this.callersOn(controller);
    validateCallerPolicy(callers, where, { allowEmpty: access.length > 0 });
    return {
      where,
      audiences,
      callers: isEmptyCallerPolicy(callers) ? undefined : callers,
      access,
      readsCaller: this.reflector.get<boolean | undefined>(CALLER_PARAM_KEY, handler) === true,
    };
  }

  private checksOn(target: RouteHandler | Controller, where: string): readonly unknown[] {
    const checks = this.reflector.get<unknown>(REQUIRE_ACCESS_KEY, target);
    if (checks === undefined) return [];
    if (!Array.isArray(checks)) throw new PolicyConfigurationError(`${where}: @RequireAccess metadata is not a list`);
    return checks;
  }

  private callersOn(target: RouteHandler | Controller): CallerPolicy {
    return {
      serviceAccounts: this.reflector.get<string[] | undefined>(ALLOW_SERVICE_ACCOUNTS_KEY, target),
      namespaces: this.reflector.get<string[] | undefined>(ALLOW_NAMESPACES_KEY, target),
    };
  }
}

/** False only when the logger is known to drop debug lines (Nest's ConsoleLogger below that level). */
function debugEnabled(logger: Logger): boolean {
  const instance = logger.localInstance as { isLevelEnabled?: (level: 'debug') => boolean } | undefined;
  return typeof instance?.isLevelEnabled === 'function' ? instance.isLevelEnabled('debug') : true;
}

/**
 * Whether the caller closes the connection after this request (`Connection: close`, or HTTP/1.0 without keep-alive):
 * its token is then not remembered on the connection. Remembering it for a connection that carries one request cost
 * 20 to 40 µs of CPU per request in the benchmark's A/B runs, more than the guard's whole work on a cached token.
 */
function closesAfter(request: GuardedRequest): boolean {
  const connection = request.headers['connection'];
  const options =
    typeof connection === 'string'
      ? connection
          .toLowerCase()
          .split(',')
          .map((o) => o.trim())
      : [];
  if (options.includes('close')) return true;
  return request.httpVersion === '1.0' && !options.includes('keep-alive');
}

function setHeader(response: HeaderWriter, name: string, value: string): void {
  if (typeof response.setHeader === 'function') response.setHeader(name, value);
  else response.header?.(name, value);
}
