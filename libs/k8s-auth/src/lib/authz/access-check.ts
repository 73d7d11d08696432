import { PolicyConfigurationError } from '../guard/route-policy';
import { isDns1123Label, isDns1123Subdomain } from '../kube/kubernetes-names';

/** A value taken from the route's path parameters, e.g. `{ param: 'name' }` on `/secrets/:name`. */
export interface RouteParam {
  param: string;
}

/**
 * "May the caller `verb` this resource?", as RBAC rules spell it (`apiGroups`, `resources`,
 * `resourceNames`, and the namespace of the RoleBinding).
 */
export interface ResourceAccessCheck {
  /** `get`, `list`, `create`, `update`, `delete`, … or a custom verb. */
  verb: string;
  /** The API group; omitted or `''` for the core group. */
  group?: string;
  /** The resource, plural and lower-case: `secrets`. */
  resource: string;
  subresource?: string;
  /**
   * One object: a fixed name, or a route parameter (which must be a DNS-1123 subdomain, else 400).
   * Omitted: the check is about the resource as a whole (a rule with `resourceNames` does not grant it).
   */
  name?: string | RouteParam;
  /**
   * The namespace, fixed or from a route parameter (a DNS-1123 label, else 400). Omitted: a
   * cluster-wide check, which only a ClusterRoleBinding can grant: a RoleBinding grants nothing to it.
   */
  namespace?: string | RouteParam;
}

/** "May the caller `verb` this URL path?", as a ClusterRole's `nonResourceURLs` spell it. */
export interface NonResourceAccessCheck {
  /** The path, e.g. `/metrics`. */
  path: string;
  /** The lower-case HTTP method: `get`, `post`, … */
  verb: string;
}

/** One check of `@RequireAccess`: a resource or a non-resource (URL path) check. */
export type AccessCheck = ResourceAccessCheck | NonResourceAccessCheck;

/** `spec.resourceAttributes` of a SubjectAccessReview. */
export interface ResourceAttributes {
  namespace?: string;
  verb: string;
  group?: string;
  resource: string;
  subresource?: string;
  name?: string;
}

/** `spec.nonResourceAttributes` of a SubjectAccessReview. */
export interface NonResourceAttributes {
  path: string;
  verb: string;
}

/** What one SubjectAccessReview asks, with every route parameter filled in. */
export type AccessAttributes =
  | { resourceAttributes: ResourceAttributes }
  | { nonResourceAttributes: NonResourceAttributes };

/** What a placeholder `{ param }` reads: an HTTP route's parameter, or a field of a gRPC request message. */
export type PlaceholderSource = 'route parameter' | 'request field';

/**
 * A route parameter (or gRPC request field) that feeds a check is not a valid Kubernetes name, or the field is
 * missing: the request is refused (400, gRPC INVALID_ARGUMENT).
 */
export class InvalidRouteParameterError extends Error {
  override readonly name = 'InvalidRouteParameterError';
  constructor(
    readonly param: string,
    source: PlaceholderSource = 'route parameter',
  ) {
    super(
      source === 'route parameter'
        ? `route parameter "${param}" is not a valid name`
        : `request field "${param}" is missing or not a valid name`,
    );
  }
}

const RESOURCE_KEYS = new Set(['verb', 'group', 'resource', 'subresource', 'name', 'namespace']);
const NON_RESOURCE_KEYS = new Set(['path', 'verb']);
const VERB = /^(\*|[a-zA-Z][a-zA-Z0-9-]*)$/;
const PARAM = /^[A-Za-z0-9_]+$/;
const PATH = /^\/[\x21-\x7e]*$/;
// Fixed object names are not always DNS names (`system:auth-delegator`), but never hold "/" or spaces.
const FIXED_NAME = /^[\x21-\x2e\x30-\x7e]{1,253}$/;

/**
 * Checks the `@RequireAccess` checks of a route and returns copies, or throws PolicyConfigurationError
 * naming `where` (e.g. 'SecretsController.read'): a typo must never silently open or close a route.
 */
export function validateAccessChecks(checks: readonly unknown[], where: string): AccessCheck[] {
  return checks.map((check, i) => validateAccessCheck(check, `${where}: @RequireAccess check ${i + 1}`));
}

function validateAccessCheck(check: unknown, where: string): AccessCheck {
  if (typeof check !== 'object' || check === null || Array.isArray(check)) {
    throw new PolicyConfigurationError(`${where} is not an object`);
  }
  const fields = check as Record<string, unknown>;
  const nonResource = 'path' in fields;
  const allowed = nonResource ? NON_RESOURCE_KEYS : RESOURCE_KEYS;
  for (const key of Object.keys(fields)) {
    if (!allowed.has(key)) {
      throw new PolicyConfigurationError(
        `${where} has an unknown field "${key}" (a ${nonResource ? 'non-resource check takes path and verb' : 'resource check takes verb, group, resource, subresource, name and namespace'})`,
      );
    }
  }
  const verb = fields['verb'];
  if (typeof verb !== 'string' || !VERB.test(verb)) {
    throw new PolicyConfigurationError(`${where}: verb ${describe(verb)} is not a verb (e.g. "get", or "*")`);
  }
  if (nonResource) {
    const path = fields['path'];
    if (typeof path !== 'string' || !PATH.test(path)) {
      throw new PolicyConfigurationError(`${where}: path ${describe(path)} is not a URL path starting with "/"`);
    }
    return { path, verb };
  }

  const resource = fields['resource'];
  if (typeof resource !== 'string' || !(resource === '*' || isDns1123Label(resource))) {
    throw new PolicyConfigurationError(
      `${where}: resource ${describe(resource)} is not a resource name (plural, lower-case, e.g. "secrets")`,
    );
  }
  const result: ResourceAccessCheck = { verb, resource };
  const group = fields['group'];
  if (group !== undefined) {
    if (typeof group !== 'string' || !(group === '' || group === '*' || isDns1123Subdomain(group))) {
      throw new PolicyConfigurationError(`${where}: group ${describe(group)} is not an API group name`);
    }
    result.group = group;
  }
  const subresource = fields['subresource'];
  if (subresource !== undefined) {
    if (typeof subresource !== 'string' || !isDns1123Label(subresource)) {
      throw new PolicyConfigurationError(`${where}: subresource ${describe(subresource)} is not a subresource name`);
    }
    result.subresource = subresource;
  }
  const name = fields['name'];
  if (name !== undefined) {
    result.name = validateValue(name, 'name', where, (v) => FIXED_NAME.test(v));
  }
  const namespace = fields['namespace'];
  if (namespace !== undefined) {
    result.namespace = validateValue(namespace, 'namespace', where, isDns1123Label);
  }
  return result;
}

function validateValue(
  value: unknown,
  field: string,
  where: string,
  isValid: (v: string) => boolean,
): string | RouteParam {
  if (typeof value === 'string') {
    if (!isValid(value)) throw new PolicyConfigurationError(`${where}: ${field} ${describe(value)} is not valid`);
    return value;
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    const param = (value as Record<string, unknown>)['param'];
    if (keys.length === 1 && typeof param === 'string' && PARAM.test(param)) return { param };
  }
  throw new PolicyConfigurationError(
    `${where}: ${field} must be a string or { param: '<route parameter>' }, got ${describe(value)}`,
  );
}

/**
 * Fills the route parameters (or a gRPC request's fields) into validated checks. A value is used only if it is a
 * Kubernetes name (DNS-1123 subdomain for `name`, label for `namespace`); it is never interpolated.
 * @throws InvalidRouteParameterError when a value is not such a name (answer 400), or a request field is missing
 * (the proto is not known at start-up).
 * @throws PolicyConfigurationError when the route has no such parameter (a mistake in the code).
 */
export function resolveAccessChecks(
  checks: readonly AccessCheck[],
  params: Readonly<Record<string, unknown>> | undefined,
  where: string,
  source: PlaceholderSource = 'route parameter',
): AccessAttributes[] {
  return checks.map((check): AccessAttributes => {
    if ('path' in check) return { nonResourceAttributes: { path: check.path, verb: check.verb } };
    const attributes: ResourceAttributes = { verb: check.verb, resource: check.resource };
    if (check.namespace !== undefined) {
      attributes.namespace = resolveValue(check.namespace, params, where, isDns1123Label, source);
    }
    if (check.group !== undefined) attributes.group = check.group;
    if (check.subresource !== undefined) attributes.subresource = check.subresource;
    if (check.name !== undefined) {
      attributes.name = resolveValue(check.name, params, where, isDns1123Subdomain, source);
    }
    return { resourceAttributes: attributes };
  });
}

function resolveValue(
  value: string | RouteParam,
  params: Readonly<Record<string, unknown>> | undefined,
  where: string,
  isValid: (v: string) => boolean,
  source: PlaceholderSource,
): string {
  if (typeof value === 'string') return value;
  const found = params && Object.prototype.hasOwnProperty.call(params, value.param) ? params[value.param] : undefined;
  if (found === undefined && source === 'request field') throw new InvalidRouteParameterError(value.param, source);
  if (found === undefined) {
    throw new PolicyConfigurationError(
      `${where}: @RequireAccess reads the route parameter "${value.param}", which this route does not have`,
    );
  }
  if (typeof found !== 'string' || !isValid(found)) throw new InvalidRouteParameterError(value.param, source);
  return found;
}

/** A short human description of an access review, for logs: `get secret-store.example.com/secrets "x" in ns`. */
export function describeAccess(attributes: AccessAttributes): string {
  if ('nonResourceAttributes' in attributes) {
    const { verb, path } = attributes.nonResourceAttributes;
    return `${verb} ${path}`;
  }
  const { verb, group, resource, subresource, name, namespace } = attributes.resourceAttributes;
  const kind = `${group ? `${group}/` : ''}${resource}${subresource ? `/${subresource}` : ''}`;
  return `${verb} ${kind}${name ? ` "${name}"` : ''}${namespace ? ` in ${namespace}` : ' (cluster-wide)'}`;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : `of type ${value === null ? 'null' : typeof value}`;
}
