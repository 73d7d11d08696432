/** A ServiceAccount identified by its namespace and name. */
export interface ServiceAccountName {
  namespace: string;
  name: string;
}

// The same patterns and limits Kubernetes applies (k8s.io/apimachinery/pkg/util/validation).
const LABEL = '[a-z0-9](?:[-a-z0-9]*[a-z0-9])?';
const SUBDOMAIN = `${LABEL}(?:\\.${LABEL})*`;
const DNS1123_LABEL = new RegExp(`^${LABEL}$`);
const DNS1123_LABEL_MAX_LENGTH = 63;
const DNS1123_SUBDOMAIN = new RegExp(`^${SUBDOMAIN}$`);
const DNS1123_SUBDOMAIN_MAX_LENGTH = 253;

/**
 * A TokenReview username of a ServiceAccount, `system:serviceaccount:<namespace>:<name>`, as Kubernetes spells them:
 * its `namespace` and `name` groups are a DNS label and a DNS subdomain within their length limits.
 */
export const SERVICE_ACCOUNT_USERNAME = new RegExp(
  `^system:serviceaccount:(?<namespace>(?=[^:]{1,${DNS1123_LABEL_MAX_LENGTH}}:)${LABEL}):` +
    `(?<name>(?=.{1,${DNS1123_SUBDOMAIN_MAX_LENGTH}}$)${SUBDOMAIN})$`,
);

/** Whether `value` is a valid namespace name (RFC 1123 label). */
export function isDns1123Label(value: string): boolean {
  return value.length <= DNS1123_LABEL_MAX_LENGTH && DNS1123_LABEL.test(value);
}

/** Whether `value` is a valid ServiceAccount name (RFC 1123 subdomain). */
export function isDns1123Subdomain(value: string): boolean {
  return value.length <= DNS1123_SUBDOMAIN_MAX_LENGTH && DNS1123_SUBDOMAIN.test(value);
}
