import type { Type } from '@nestjs/common';
import { GUARDS_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { APP_GUARD, type DiscoveryService, type MetadataScanner } from '@nestjs/core';
import {
  ALLOW_NAMESPACES_KEY,
  ALLOW_SERVICE_ACCOUNTS_KEY,
  AUDIENCE_KEY,
  PUBLIC_ROUTE_KEY,
  REQUIRE_ACCESS_KEY,
} from '../module/k8s-auth.constants';
import { type Handler, handlerTransport, type HandlerTransport, handlerWhere } from './handler-transport';

export type { Handler } from './handler-transport';

/** The decorators that say who may call a route: on a route no guard covers, nobody enforces them. */
const POLICY_KEYS = [AUDIENCE_KEY, ALLOW_SERVICE_ACCOUNTS_KEY, ALLOW_NAMESPACES_KEY, REQUIRE_ACCESS_KEY];

/** An HTTP route or a gRPC method of the app (or a handler of another transport), as its decorators declare it. */
export interface DiscoveredRoute {
  readonly controller: Type;
  readonly handler: Handler;
  /** `Controller.handler`. */
  readonly where: string;
  /**
   * `GET /secrets/:name`, as the controller and the handler declare it (without a global prefix or module path);
   * `gRPC SecretStore/Read`; `@MessagePattern("x") on KAFKA`.
   */
  readonly path: string;
  readonly transport: HandlerTransport['kind'];
  /**
   * How the guard covers the route: `local` by `@UseGuards` on the controller or the handler (which wins), `global`
   * by an `APP_GUARD` only, `false` not at all. `inherited`: a gRPC method of a hybrid app (HTTP and
   * `connectMicroservice`) under an `APP_GUARD` only, which reaches it only if the microservice was connected with
   * `inheritAppConfig: true`, an option nothing in the app's container records.
   */
  readonly guarded: 'local' | 'global' | 'inherited' | false;
  /** `@PublicRoute()` on the handler or its controller. */
  readonly public: boolean;
  /** `@Audience`, `@AllowServiceAccounts`, `@AllowNamespaces` or `@RequireAccess` on the handler or its controller. */
  readonly declaresPolicy: boolean;
}

/**
 * Every HTTP route and microservice handler of the app's controllers, with whether `isGuard` covers it, through
 * `@UseGuards` or an `APP_GUARD` provider. A guard set with `app.useGlobalGuards()` is not a provider, and is not seen.
 * `hybrid`: the app serves HTTP, so an `APP_GUARD` reaches its gRPC methods only through `inheritAppConfig`.
 */
export function discoverRoutes(
  discovery: DiscoveryService,
  scanner: MetadataScanner,
  isGuard: (guard: unknown) => boolean,
  { hybrid = false }: { hybrid?: boolean } = {},
): DiscoveredRoute[] {
  // `useClass` names the guard as the provider's class, `useExisting` only through the instance.
  const global = appGuards(discovery).some((w) => isGuard(w.metatype) || isGuard(w.instance));
  const routes: DiscoveredRoute[] = [];
  for (const wrapper of discovery.getControllers()) {
    const controller = wrapper.metatype as Type | undefined;
    if (!controller?.prototype) continue;
    const onController = guardsOn(controller).some(isGuard);
    for (const name of scanner.getAllMethodNames(controller.prototype)) {
      const handler = controller.prototype[name] as Handler;
      const transport = handlerTransport(handler);
      if (!transport) continue;
      const local = onController || guardsOn(handler).some(isGuard);
      const viaAppGuard = transport.kind === 'grpc' && hybrid ? 'inherited' : 'global';
      routes.push({
        controller,
        handler,
        where: handlerWhere(controller, handler),
        path: describeHandler(controller, handler, transport),
        transport: transport.kind,
        guarded: local ? 'local' : global ? viaAppGuard : false,
        public: hasAny([PUBLIC_ROUTE_KEY], controller, handler),
        declaresPolicy: hasAny(POLICY_KEYS, controller, handler),
      });
    }
  }
  return routes;
}

/**
 * Whether a guard object that `isInstance` accepts runs for some route: as an `APP_GUARD`, or named by `@UseGuards`
 * (Nest builds that one in the controller's module). A guard a test put in its place (`overrideGuard`,
 * `overrideProvider`) is another object, even where the decorators still name the class.
 */
export function guardRunsForSomeRoute(
  discovery: DiscoveryService,
  scanner: MetadataScanner,
  isInstance: (guard: unknown) => boolean,
): boolean {
  if (appGuards(discovery).some((w) => isInstance(w.instance))) return true;
  return discovery.getControllers().some((wrapper) => {
    const controller = wrapper.metatype as Type | undefined;
    if (!controller?.prototype) return false;
    const handlers = scanner.getAllMethodNames(controller.prototype).map((name) => controller.prototype[name]);
    return [controller, ...handlers]
      .flatMap((target) => guardsOn(target as object))
      .some((guard) =>
        isInstance(typeof guard === 'function' ? wrapper.host?.injectables.get(guard)?.instance : guard),
      );
  });
}

/** The providers registered as `APP_GUARD`. */
function appGuards(discovery: DiscoveryService) {
  return discovery.getProviders().filter((w) => typeof w.token === 'string' && w.token.startsWith(APP_GUARD));
}

function guardsOn(target: object): unknown[] {
  return (Reflect.getMetadata(GUARDS_METADATA, target) as unknown[] | undefined) ?? [];
}

function hasAny(keys: readonly string[], controller: Type, handler: Handler): boolean {
  return keys.some((key) => Reflect.hasMetadata(key, handler) || Reflect.hasMetadata(key, controller));
}

function describeHandler(controller: Type, handler: Handler, transport: HandlerTransport): string {
  if (transport.kind === 'grpc') return `gRPC ${transport.service}/${transport.rpc}`;
  if (transport.kind === 'other') return transport.describe;
  return pathOf(controller, handler, transport.method);
}

/** `GET /a/:id`; a controller or a handler with several paths gives each combination, `GET /a, /b`. */
function pathOf(controller: Type, handler: Handler, method: string): string {
  const paths: string[] = [];
  for (const prefix of pathsOf(controller)) {
    for (const own of pathsOf(handler)) {
      paths.push(
        `/${[prefix, own]
          .map((p) => p.replace(/^\/+|\/+$/g, ''))
          .filter(Boolean)
          .join('/')}`,
      );
    }
  }
  return `${method} ${paths.join(', ')}`;
}

function pathsOf(target: object): string[] {
  const declared = Reflect.getMetadata(PATH_METADATA, target) as string | string[] | undefined;
  const list = (Array.isArray(declared) ? declared : [declared]).filter((p): p is string => typeof p === 'string');
  return list.length > 0 ? list : [''];
}
