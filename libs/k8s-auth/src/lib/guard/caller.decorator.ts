import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { CallerIdentity } from '../authn/authentication.types';
import { PUBLIC_ROUTE_KEY } from '../module/k8s-auth.constants';
import { guardedCallOf } from './guarded-call';
import { handlerWhere } from './handler-transport';
import { requestCaller } from './service-account.guard';

/** `@Caller()` on a route that no ServiceAccountGuard checked: there is no caller to give. Nest answers 500. */
class UnguardedRouteError extends Error {
  override readonly name = 'UnguardedRouteError';
}

/**
 * The identity ServiceAccountGuard established for this request or gRPC call (frozen); undefined on a public route.
 * @throws UnguardedRouteError (answered 500, logged with the route's name) when no guard ran on a route that is not
 * `@PublicRoute()`, rather than hand the handler an undefined it does not expect.
 */
export const Caller = createParamDecorator((_data: unknown, context: ExecutionContext): CallerIdentity | undefined => {
  const carrier = guardedCallOf(context)?.carrier(context);
  const caller = carrier && requestCaller(carrier);
  if (caller || isPublicRoute(context)) return caller;
  const where = handlerWhere(context.getClass(), context.getHandler());
  throw new UnguardedRouteError(
    `@Caller() on ${where}: the route is not guarded by ServiceAccountGuard, so no caller was checked. Add ` +
      '@UseGuards(ServiceAccountGuard) to its controller or handler, or guard every route with an APP_GUARD ' +
      '(or mark the route @PublicRoute(), where @Caller() is undefined)',
  );
});

function isPublicRoute(context: ExecutionContext): boolean {
  return [context.getHandler(), context.getClass()].some((target) => Reflect.getMetadata(PUBLIC_ROUTE_KEY, target));
}
