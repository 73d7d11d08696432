/** A ServiceAccount identified by its namespace and name. */
export interface ServiceAccountName {
  namespace: string;
  name: string;
}

const SERVICE_ACCOUNT_USERNAME_PREFIX = 'system:serviceaccount:';

// The same patterns and limits Kubernetes applies (k8s.io/apimachinery/pkg/util/validation).
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_LABEL_MAX_LENGTH = 63;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_SUBDOMAIN_MAX_LENGTH = 253;

/** Whether `value` is a valid namespace name (RFC 1123 label). */
export function isDns1123Label(value: string): boolean {
  return value.length <= DNS1123_LABEL_MAX_LENGTH && DNS1123_LABEL.test(value);
}

/** Whether `value` is a valid ServiceAccount name (RFC 1123 subdomain). */
export function isDns1123Subdomain(value: string): boolean {
  return value.length <= DNS1123_SUBDOMAIN_MAX_LENGTH && DNS1123_SUBDOMAIN.test(value);
}

/**
 * Reads the ServiceAccount from a TokenReview username, `system:serviceaccount:<namespace>:<name>`.
 * Anything else (nodes, users, groups, odd spellings) yields undefined: only ServiceAccounts are callers.
 */
export function parseServiceAccountUsername(username: string): ServiceAccountName | undefined {
  if (!username.startsWith(SERVICE_ACCOUNT_USERNAME_PREFIX)) return undefined;
  const parts = username.slice(SERVICE_ACCOUNT_USERNAME_PREFIX.length).split(':');
  if (parts.length !== 2) return undefined;
  const [namespace, name] = parts;
  if (!isDns1123Label(namespace) || !isDns1123Subdomain(name)) return undefined;
  return { namespace, name };
}
