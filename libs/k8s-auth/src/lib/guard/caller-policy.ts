import { isDns1123Label, isDns1123Subdomain, ServiceAccountName } from '../kube/kubernetes-names';

/** Who may call a handler: listed ServiceAccounts (`namespace:name`) and every ServiceAccount of listed namespaces. */
export interface CallerPolicy {
  serviceAccounts?: readonly string[];
  namespaces?: readonly string[];
}

/** A policy that cannot be enforced as written; raised at a route's first request (a 500 naming it), so a typo never silently opens or closes it. */
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
