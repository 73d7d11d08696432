import {
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
import { extractToken, type TokenHeader, tokenFingerprint } from './bearer-token';
import { type CallerPolicy, isCallerAllowed, PolicyConfigurationError, validateCallerPolicy } from './caller-policy';
import {
  ALLOW_NAMESPACES_KEY,
  ALLOW_SERVICE_ACCOUNTS_KEY,
  API_SERVER_AUDIENCE,
  AUDIENCE_KEY,
  CALLER_KEY,
  DEFAULTS,
  PUBLIC_ROUTE_KEY,
} from './k8s-auth.constants';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import { MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { type CallerIdentity, ReviewUnavailableError, TokenReviewer } from './token-reviewer';

interface RoutePolicy {
  audiences: string[];
  callers: CallerPolicy;
}

type RouteHandler = ReturnType<ExecutionContext['getHandler']>;
type Controller = ReturnType<ExecutionContext['getClass']>;

interface HeaderWriter {
  setHeader?(name: string, value: string): void;
  header?(name: string, value: string): void;
}

/**
 * Lets a request through only with a token the API server accepts for the route's audience, from a
 * service account the route's policy names. Works as a global `APP_GUARD` or with `@UseGuards`.
 *
 * 401: no token, or not a well-formed one. 403: the API server refused it, or the caller is not
 * allowed. 503 with Retry-After: the API server could not answer (fail closed).
 */
@Injectable()
export class ServiceAccountGuard implements CanActivate {
  private readonly logger = new Logger('ServiceAccountGuard');
  private readonly policies = new WeakMap<RouteHandler, RoutePolicy>();
  private readonly tokenHeaders: readonly TokenHeader[];
  private readonly maxTokenBytes: number;
  private readonly retryAfter: string;

  constructor(
    @Inject(MODULE_OPTIONS_TOKEN) private readonly options: K8sAuthModuleOptions,
    private readonly reflector: Reflector,
    private readonly reviewer: TokenReviewer,
    private readonly metrics: K8sAuthMetrics,
  ) {
    this.tokenHeaders = options.tokenHeaders ?? DEFAULTS.tokenHeaders;
    this.maxTokenBytes = options.maxTokenBytes ?? DEFAULTS.maxTokenBytes;
    this.retryAfter = String(options.retryAfterSeconds ?? DEFAULTS.retryAfterSeconds);
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const handler = context.getHandler();
    const controller = context.getClass();
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE_KEY, [handler, controller])) return true;

    const policy = this.policyOf(handler, controller);
    const http = context.switchToHttp();
    const request = http.getRequest<
      { headers: Record<string, string | string[] | undefined> } & Record<symbol, unknown>
    >();
    const response = http.getResponse<HeaderWriter>();

    const extracted = extractToken(request.headers, this.tokenHeaders, this.maxTokenBytes);
    if (extracted.kind !== 'token') {
      const error = extracted.kind === 'missing' ? '' : ', error="invalid_request"';
      setHeader(response, 'WWW-Authenticate', `Bearer${error}`);
      this.metrics.decision('unauthenticated');
      throw new UnauthorizedException(extracted.kind === 'missing' ? 'token required' : extracted.reason);
    }

    let result;
    try {
      result = await this.reviewer.review(extracted.token, policy.audiences);
    } catch (err) {
      if (!(err instanceof ReviewUnavailableError)) throw err;
      setHeader(response, 'Retry-After', this.retryAfter);
      this.metrics.decision('unavailable');
      throw new ServiceUnavailableException('authentication is unavailable, retry later');
    }

    const fingerprint = tokenFingerprint(extracted.token);
    if (!result.accepted) {
      this.logger.warn(`refused token ${fingerprint}: ${result.reason}`);
      this.metrics.decision('forbidden');
      throw new ForbiddenException(result.reason);
    }
    const caller: CallerIdentity = result.caller;
    if (!isCallerAllowed(policy.callers, { namespace: caller.namespace, name: caller.serviceAccount })) {
      this.logger.warn(`refused ${caller.username} (token ${fingerprint}): caller not allowed`);
      this.metrics.decision('forbidden');
      throw new ForbiddenException('caller not allowed');
    }
    this.logger.debug(`allowed ${caller.username} pod=${caller.podName ?? '-'} token ${fingerprint}`);
    this.metrics.decision('allowed');
    request[CALLER_KEY] = caller;
    return true;
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

    // A route that declares any allowlist replaces the controller's allowlists as a whole.
    const onRoute = this.callersOn(handler);
    const callers = onRoute.serviceAccounts || onRoute.namespaces ? onRoute : this.callersOn(controller);
    validateCallerPolicy(callers, where);
    return { audiences, callers };
  }

  private callersOn(target: RouteHandler | Controller): CallerPolicy {
    return {
      serviceAccounts: this.reflector.get<string[] | undefined>(ALLOW_SERVICE_ACCOUNTS_KEY, target),
      namespaces: this.reflector.get<string[] | undefined>(ALLOW_NAMESPACES_KEY, target),
    };
  }
}

function setHeader(response: HeaderWriter, name: string, value: string): void {
  if (typeof response.setHeader === 'function') response.setHeader(name, value);
  else response.header?.(name, value);
}
