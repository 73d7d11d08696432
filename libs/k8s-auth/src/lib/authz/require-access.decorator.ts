import type { AccessCheck } from './access-check';
import { REQUIRE_ACCESS_KEY } from '../module/k8s-auth.constants';

/**
 * Kubernetes RBAC decides: after the token review, ServiceAccountGuard asks the API server
 * (SubjectAccessReview) whether the caller may do each check, and lets the request through only if
 * every one is allowed (else 403 'access denied by RBAC').
 *
 * Checks add up: several checks in one decorator, the decorator used several times, and the
 * controller's checks together with the route's: all must be allowed. An allowlist
 * (`@AllowServiceAccounts`, `@AllowNamespaces`), if the route has one, must pass as well; without
 * one, RBAC alone decides.
 *
 * @example
 * ```ts
 * @Get('secrets/:name')
 * @RequireAccess({
 *   verb: 'get',
 *   group: 'secret-store.example.com',
 *   resource: 'secrets',
 *   namespace: 'secret-store',
 *   name: { param: 'name' }, // a DNS-1123 subdomain, else 400
 * })
 * read(@Param('name') name: string) {}
 *
 * @Get('metrics')
 * @RequireAccess({ path: '/metrics', verb: 'get' })
 * metrics() {}
 * ```
 */
export function RequireAccess(...checks: [AccessCheck, ...AccessCheck[]]): ClassDecorator & MethodDecorator {
  return (target: object, _key?: string | symbol, descriptor?: PropertyDescriptor): void => {
    const holder: object = descriptor ? (descriptor.value as object) : target;
    const existing = (Reflect.getMetadata(REQUIRE_ACCESS_KEY, holder) as AccessCheck[] | undefined) ?? [];
    // Decorators run bottom-up: putting the new checks first keeps the order they are written in.
    Reflect.defineMetadata(REQUIRE_ACCESS_KEY, [...checks, ...existing], holder);
  };
}
