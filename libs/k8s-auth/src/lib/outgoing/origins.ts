/**
 * `scheme://host[:port]` of `value`, for an option naming where a token goes.
 * @throws Error naming `helper` when `value` is not an http(s) origin.
 */
export function parseOrigin(value: string, helper: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (
    !url ||
    !/^https?:$/.test(url.protocol) ||
    url.username ||
    url.password ||
    url.pathname !== '/' ||
    url.search ||
    url.hash
  ) {
    throw new Error(`${helper}: '${value}' is not an origin (scheme://host[:port])`);
  }
  return url.origin;
}

/** `scheme://host[:port]` of an absolute http(s) URL, else undefined. */
export function originOf(value: string): string | undefined {
  try {
    const url = new URL(value);
    return /^https?:$/.test(url.protocol) ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

/** The methods a request may be sent again with (RFC 9110, 9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
