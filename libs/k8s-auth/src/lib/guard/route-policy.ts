import { Inject, Injectable, Logger, Optional, type Type } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, HttpAdapterHost, MetadataScanner, Reflector } from '@nestjs/core';
import { type AccessCheck, validateAccessChecks } from '../authz/access-check';
import { isDns1123Label, isDns1123Subdomain, type ServiceAccountName } from '../kube/kubernetes-names';
import {
  ALLOW_NAMESPACES_KEY,
  ALLOW_SERVICE_ACCOUNTS_KEY,
  API_SERVER_AUDIENCE,
  AUDIENCE_KEY,
  PUBLIC_ROUTE_KEY,
  REQUIRE_ACCESS_KEY,
} from '../module/k8s-auth.constants';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';
import { type DiscoveredRoute, discoverRoutes, guardRunsForSomeRoute } from './discovered-routes';
import { type Handler, handlerTransport, handlerWhere } from './handler-transport';

/** What a guarded route lets through, read from its decorators and its controller's. */
export interface RoutePolicy {
  /** `Controller.handler`, for messages. */
  readonly where: string;
  /** `@PublicRoute()`: no token needed. */
  readonly public: boolean;
  /** The audiences a token must be meant for; empty: the API server's own (legacy tokens). */
  readonly audiences: readonly string[];
  /** Undefined: the route has no allowlist, RBAC alone decides. */
  readonly callers?: CallerPolicy;
  /** `@RequireAccess` checks of the controller and the route; all must be allowed. */
  readonly access: readonly AccessCheck[];
}

/** Who may call a handler: listed ServiceAccounts (`namespace:name`) and every ServiceAccount of listed namespaces. */
export interface CallerPolicy {
  serviceAccounts?: readonly string[];
  namespaces?: readonly string[];
}

/**
 * A policy that cannot be enforced as written, or that no guard enforces: start-up stops naming every such route (a
 * route the start-up check does not see answers 500 at its first request), so a typo never silently opens or closes
 * it.
 */
export class PolicyConfigurationError extends Error {
  override readonly name = 'PolicyConfigurationError';
}

/**
 * Throws PolicyConfigurationError naming `where` (e.g. 'SecretsController.read') if `policy` is unusable.
 * An empty policy allows nobody, an error unless `allowEmpty` (the route has `@RequireAccess`: RBAC decides).
 */
export function validateCallerPolicy(
  policy: CallerPolicy,
  where: string,
  options: { allowEmpty?: boolean } = {},
): void {
  const serviceAccounts = checkList(policy.serviceAccounts, '@AllowServiceAccounts', where);
  const namespaces = checkList(policy.namespaces, '@AllowNamespaces', where);

  for (const entry of serviceAccounts) {
    if (!isServiceAccountEntry(entry)) {
      throw new PolicyConfigurationError(
        `${where}: @AllowServiceAccounts entry ${describe(entry)} is not "namespace:name" ` +
          '(a namespace and a ServiceAccount name as Kubernetes spells them; no wildcards, prefixes or spaces)',
      );
    }
  }
  for (const entry of namespaces) {
    if (typeof entry !== 'string' || !isDns1123Label(entry)) {
      throw new PolicyConfigurationError(
        `${where}: @AllowNamespaces entry ${describe(entry)} is not a namespace name ` +
          '(lower-case letters, digits and "-", at most 63; no wildcards, prefixes or spaces)',
      );
    }
  }
  if (serviceAccounts.length === 0 && namespaces.length === 0 && !options.allowEmpty) {
    throw new PolicyConfigurationError(`${where} allows nobody: add @AllowServiceAccounts or @AllowNamespaces`);
  }
}

/** Whether `policy` names nobody: no allowlist at all. */
export function isEmptyCallerPolicy(policy: CallerPolicy): boolean {
  return (policy.serviceAccounts?.length ?? 0) === 0 && (policy.namespaces?.length ?? 0) === 0;
}

/** Exact matches only: validated policies contain no patterns, and a shared prefix is not a match. */
export function isCallerAllowed(policy: CallerPolicy, caller: ServiceAccountName): boolean {
  return (
    (policy.namespaces?.includes(caller.namespace) ?? false) ||
    (policy.serviceAccounts?.includes(`${caller.namespace}:${caller.name}`) ?? false)
  );
}

// Decorators may be used from plain JavaScript, so the shape is checked rather than trusted.
function checkList(list: readonly unknown[] | undefined, decorator: string, where: string): readonly unknown[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new PolicyConfigurationError(`${where}: ${decorator} expects a list of strings`);
  return list;
}

function isServiceAccountEntry(entry: unknown): boolean {
  if (typeof entry !== 'string') return false;
  const parts = entry.split(':');
  return parts.length === 2 && isDns1123Label(parts[0]) && isDns1123Subdomain(parts[1]);
}

function describe(entry: unknown): string {
  return typeof entry === 'string' ? JSON.stringify(entry) : `of type ${entry === null ? 'null' : typeof entry}`;
}

/** What {@link RoutePolicies.checkAll} found: routes that need a token, and `@PublicRoute()` ones. */
export interface GuardedRouteCount {
  guarded: number;
  public: number;
}

/**
 * Reads and validates each route's policy once, per (controller, handler): a handler inherited from a base class is
 * one function shared by every controller that extends it, and each of those controllers has its own decorators.
 * {@link checkAll} validates every guarded route as the app starts, so a misconfigured route stops start-up with its
 * name instead of answering 500 at its first request.
 */
@Injectable()
export class RoutePolicies {
  private readonly logger = new Logger('ServiceAccountGuard');
  private readonly known = new WeakMap<Type, WeakMap<Handler, RoutePolicy>>();
  private checked = false;
  private withAccessChecks = false;
  private readonly allowed = { namespaces: new Set<string>(), serviceAccounts: new Set<string>() };
  private markAllChecked!: () => void;
  /** Resolves once {@link checkAll} has read every guarded route: {@link allowlisted} is complete from then on. */
  readonly allChecked = new Promise<void>((resolve) => (this.markAllChecked = resolve));

  constructor(
    @Inject(RESOLVED_OPTIONS) private readonly options: Pick<ResolvedOptions, 'audiences' | 'unguardedRoutes'>,
    private readonly reflector: Reflector,
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    @Optional() private readonly httpAdapterHost?: HttpAdapterHost,
  ) {}

  /**
   * The policy of `handler` as a route of `controller`.
   * @throws PolicyConfigurationError naming the route when its decorators cannot be enforced as written.
   */
  of(controller: Type, handler: Handler): RoutePolicy {
    let byHandler = this.known.get(controller);
    if (!byHandler) this.known.set(controller, (byHandler = new WeakMap()));
    let policy = byHandler.get(handler);
    if (!policy) {
      byHandler.set(handler, (policy = this.read(controller, handler)));
      if (policy.access.length > 0) this.withAccessChecks = true;
      for (const namespace of policy.callers?.namespaces ?? []) this.allowed.namespaces.add(namespace);
      for (const account of policy.callers?.serviceAccounts ?? []) this.allowed.serviceAccounts.add(account);
    }
    return policy;
  }

  /** The namespaces and `namespace:name` service accounts that the allowlists of the routes read so far name. */
  allowlisted(): { namespaces: ReadonlySet<string>; serviceAccounts: ReadonlySet<string> } {
    return { namespaces: new Set(this.allowed.namespaces), serviceAccounts: new Set(this.allowed.serviceAccounts) };
  }

  /**
   * Reads the policy of every route that `isGuard` guards (through `@UseGuards` or as an `APP_GUARD`), once, and
   * returns how many routes are guarded and how many public (both 0 after the first call). A route that declares who
   * may call it but that no guard covers is an error too, or a warning with the option `unguardedRoutes: 'warn'`.
   * @throws PolicyConfigurationError naming every route that is misconfigured, and every unguarded one.
   */
  checkAll(isGuard: (guard: unknown) => boolean): GuardedRouteCount {
    const count = { guarded: 0, public: 0 };
    if (this.checked) return count;
    this.checked = true;
    const misconfigured: string[] = [];
    const unguarded: DiscoveredRoute[] = [];
    const otherTransports: DiscoveredRoute[] = [];
    const inherited: { declaring: DiscoveredRoute[]; silent: DiscoveredRoute[] } = { declaring: [], silent: [] };
    const hybrid = this.httpAdapterHost?.httpAdapter != null;
    for (const route of discoverRoutes(this.discovery, this.scanner, isGuard, { hybrid })) {
      if (route.transport === 'other') {
        if (route.declaresPolicy || route.public) otherTransports.push(route);
        continue;
      }
      if (route.guarded === 'inherited') {
        // Perhaps guarded: what it declares must be enforceable all the same, and it is not counted.
        if (route.public) continue;
        (route.declaresPolicy ? inherited.declaring : inherited.silent).push(route);
        if (!route.declaresPolicy) continue;
      } else if (!route.guarded) {
        if (route.declaresPolicy && !route.public) unguarded.push(route);
        continue;
      }
      try {
        const policy = this.of(route.controller, route.handler);
        if (route.guarded !== 'inherited') count[policy.public ? 'public' : 'guarded']++;
      } catch (err) {
        if (!(err instanceof PolicyConfigurationError)) throw err;
        misconfigured.push(`- [${route.path}] ${err.message}${publicRouteHint(route)}`);
      }
    }

    const problems: string[] = [];
    if (otherTransports.length > 0) problems.push(otherTransportsReport(otherTransports));
    if (inherited.declaring.length > 0) {
      const report = inheritedReport(inherited.declaring, this.options.unguardedRoutes);
      if (this.options.unguardedRoutes === 'error') problems.push(report);
      else this.logger.warn(report);
    }
    if (inherited.silent.length > 0) this.logger.warn(silentInheritedReport(inherited.silent));
    if (misconfigured.length > 0) {
      problems.push(
        `${misconfigured.length} route(s) guarded by ServiceAccountGuard cannot be enforced as written:\n` +
          misconfigured.join('\n'),
      );
    }
    if (unguarded.length > 0) {
      const report = unguardedReport(unguarded, this.options.unguardedRoutes);
      if (this.options.unguardedRoutes === 'error') problems.push(report);
      else this.logger.warn(report);
    }
    if (problems.length > 0) throw new PolicyConfigurationError(problems.join('\n'));

    this.logger.log(`${count.guarded} guarded and ${count.public} public route(s) checked`);
    this.markAllChecked();
    return count;
  }

  /** Whether a route read so far has `@RequireAccess` checks: after {@link checkAll}, whether any guarded route has. */
  hasAccessChecks(): boolean {
    return this.withAccessChecks;
  }

  /** Whether a guard object that `isInstance` accepts runs for some route (see guardRunsForSomeRoute). */
  runsForSomeRoute(isInstance: (guard: unknown) => boolean): boolean {
    return guardRunsForSomeRoute(this.discovery, this.scanner, isInstance);
  }

  private read(controller: Type, handler: Handler): RoutePolicy {
    const where = handlerWhere(controller, handler);
    const targets = [handler, controller];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE_KEY, targets)) {
      return { where, public: true, audiences: [], access: [] };
    }
    const fromOptions = this.options.audiences;
    const declared = this.reflector.getAllAndOverride<string[] | undefined>(AUDIENCE_KEY, targets);
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
    const access = validateAccessChecks([...this.checksOn(controller, where), ...this.checksOn(handler, where)], where);
    const transport = handlerTransport(handler);
    // A gRPC method's placeholders read its request message, whose fields the proto alone knows: checked per call.
    if (transport?.kind === 'grpc') checkRequestFields(access, transport.requestStream, where);
    else checkRouteParams(access, routeParams(controller, handler), where);

    // A route that declares any allowlist replaces the controller's allowlists as a whole. With RBAC
    // checks, no allowlist at all is fine: RBAC alone decides.
    const onRoute = this.callersOn(handler);
    const callers = onRoute.serviceAccounts || onRoute.namespaces ? onRoute : this.callersOn(controller);
    validateCallerPolicy(callers, where, { allowEmpty: access.length > 0 });
    return Object.freeze({
      where,
      public: false,
      audiences: Object.freeze(audiences),
      access: Object.freeze(access),
      ...(isEmptyCallerPolicy(callers) ? {} : { callers }),
    });
  }

  private checksOn(target: object, where: string): readonly unknown[] {
    const checks = this.reflector.get<unknown>(REQUIRE_ACCESS_KEY, target as Handler);
    if (checks === undefined) return [];
    if (!Array.isArray(checks)) throw new PolicyConfigurationError(`${where}: @RequireAccess metadata is not a list`);
    return checks;
  }

  private callersOn(target: object): CallerPolicy {
    return {
      serviceAccounts: this.reflector.get<string[] | undefined>(ALLOW_SERVICE_ACCOUNTS_KEY, target as Handler),
      namespaces: this.reflector.get<string[] | undefined>(ALLOW_NAMESPACES_KEY, target as Handler),
    };
  }
}

/** The `:name` parameters of a route's paths (its controller's and its own). */
function routeParams(controller: Type, handler: Handler): Set<string> {
  const paths = [Reflect.getMetadata(PATH_METADATA, controller), Reflect.getMetadata(PATH_METADATA, handler)].flat();
  const params = new Set<string>();
  for (const path of paths) {
    if (typeof path === 'string') for (const match of path.matchAll(/:(\w+)/g)) params.add(match[1]);
  }
  return params;
}

function checkRouteParams(access: readonly AccessCheck[], params: Set<string>, where: string): void {
  for (const check of access) {
    if ('path' in check) continue;
    for (const value of [check.namespace, check.name]) {
      if (typeof value === 'object' && !params.has(value.param)) {
        throw new PolicyConfigurationError(
          `${where}: @RequireAccess reads the route parameter "${value.param}", which this route does not have`,
        );
      }
    }
  }
}

/** A request-streaming gRPC method has no one message to read a placeholder from. */
function checkRequestFields(access: readonly AccessCheck[], requestStream: boolean, where: string): void {
  if (!requestStream) return;
  for (const check of access) {
    if ('path' in check) continue;
    for (const value of [check.namespace, check.name]) {
      if (typeof value === 'object') {
        throw new PolicyConfigurationError(
          `${where}: @RequireAccess reads the request field "${value.param}", but a request-streaming gRPC method ` +
            'has no single request message: use fixed values, or a unary or server-streaming method',
        );
      }
    }
  }
}

function otherTransportsReport(routes: readonly DiscoveredRoute[]): string {
  return (
    `${routes.length} handler(s) of a transport that ServiceAccountGuard does not guard carry its decorators ` +
    '(it guards HTTP routes and gRPC methods only):\n' +
    routes.map((r) => `- [${r.path}] ${r.where}`).join('\n') +
    '\nRemove the decorators from them (and from their controllers), and check their callers with the ' +
    'TOKEN_AUTHENTICATOR provider where the transport carries a token.'
  );
}

const INHERIT_HINT =
  'In a hybrid app (HTTP and connectMicroservice) an APP_GUARD reaches gRPC methods only if the microservice is ' +
  'connected with connectMicroservice(options, { inheritAppConfig: true }), which start-up cannot see';

function inheritedReport(routes: readonly DiscoveredRoute[], action: ResolvedOptions['unguardedRoutes']): string {
  return (
    `${routes.length} gRPC method(s) declare who may call them, but only an APP_GUARD may guard them:\n` +
    routes.map((r) => `- [${r.path}] ${r.where}`).join('\n') +
    `\n${INHERIT_HINT}. Add @UseGuards(ServiceAccountGuard) to their controllers, which guards them either way` +
    (action === 'error'
      ? "; or, if the microservice inherits the app's configuration, set the K8sAuthModule option " +
        "unguardedRoutes: 'warn'."
      : " (unguardedRoutes: 'warn': start-up goes on).")
  );
}

function silentInheritedReport(routes: readonly DiscoveredRoute[]): string {
  return (
    `${routes.length} gRPC method(s) declare nothing and only an APP_GUARD may guard them:\n` +
    routes.map((r) => `- [${r.path}] ${r.where}`).join('\n') +
    `\n${INHERIT_HINT}. If it does, they need an audience and an allowlist, or @PublicRoute(); else they are open.`
  );
}

/**
 * Under an `APP_GUARD`, a route that declares nothing (a health check, metrics) is guarded all the same: it may be
 * meant to need no token.
 */
function publicRouteHint(route: DiscoveredRoute): string {
  if (route.guarded !== 'global' || route.declaresPolicy) return '';
  return (
    '; if it needs no token (a health check, metrics), mark it @PublicRoute() instead: an APP_GUARD guards ' +
    'every route'
  );
}

function unguardedReport(routes: readonly DiscoveredRoute[], action: ResolvedOptions['unguardedRoutes']): string {
  return (
    `${routes.length} route(s) declare who may call them (@Audience, @AllowServiceAccounts, @AllowNamespaces or ` +
    '@RequireAccess) but no ServiceAccountGuard covers them, so anyone may call them:\n' +
    routes.map((r) => `- [${r.path}] ${r.where}`).join('\n') +
    '\nGuard them with @UseGuards(ServiceAccountGuard) on their controller or handler, or guard every route with ' +
    "{ provide: APP_GUARD, useExisting: ServiceAccountGuard } in the root module's providers" +
    (action === 'error'
      ? '. An app that guards them another way (a guard of its own, or app.useGlobalGuards(), which is not seen ' +
        "here) sets the K8sAuthModule option unguardedRoutes: 'warn'."
      : " (unguardedRoutes: 'warn': start-up goes on).")
  );
}
