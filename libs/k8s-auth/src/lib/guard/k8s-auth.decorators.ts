import { SetMetadata } from '@nestjs/common';
import {
  ALLOW_NAMESPACES_KEY,
  ALLOW_SERVICE_ACCOUNTS_KEY,
  AUDIENCE_KEY,
  PUBLIC_ROUTE_KEY,
} from '../module/k8s-auth.constants';

/**
 * The audiences a caller's token must be meant for, on a controller or a route (the route wins).
 * Without it the module's `audiences` option applies.
 */
export const Audience = (...audiences: [string, ...string[]]) => SetMetadata(AUDIENCE_KEY, audiences);

/**
 * The service accounts allowed to call, as exact `namespace:name` (no prefixes, no globs). On a
 * controller or a route (the route wins). A caller passes if it is listed here or its namespace is
 * listed by `@AllowNamespaces`.
 */
export const AllowServiceAccounts = (...serviceAccounts: [string, ...string[]]) =>
  SetMetadata(ALLOW_SERVICE_ACCOUNTS_KEY, serviceAccounts);

/** Every service account of these namespaces may call. On a controller or a route (the route wins). */
export const AllowNamespaces = (...namespaces: [string, ...string[]]) => SetMetadata(ALLOW_NAMESPACES_KEY, namespaces);

/** The route needs no token (health checks, metrics). */
export const PublicRoute = () => SetMetadata(PUBLIC_ROUTE_KEY, true);
