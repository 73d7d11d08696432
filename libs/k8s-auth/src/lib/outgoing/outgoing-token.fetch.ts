import { IDEMPOTENT_METHODS, originOf, parseOrigin } from './origins';
import type { TokenSource } from './token-source';

export interface FetchTokenOptions {
  /** The origin (`scheme://host[:port]`) the token is sent to; requests to any other origin get no token. */
  origin: string;
  /** How the token is sent. @default 'authorization' (`Authorization: Bearer <token>`) */
  header?: 'authorization' | 'x-client-id';
  /** The fetch that sends the requests. @default the global `fetch` */
  fetch?: typeof fetch;
}

const HELPER = 'fetchWithServiceAccountToken';
type FetchInput = Parameters<typeof fetch>[0];

/**
 * A `fetch` that sends `source`'s token with requests to `options.origin` (scheme, host and port exactly), and with
 * no other request. A request that carries the token follows no redirect: the 3xx is the answer, so the token never
 * reaches the origin a `Location` names. A header the caller set itself is kept: the request then carries no token of
 * this source. On a 401 the token may just have been rotated: the source is re-read once and a request of an
 * idempotent method is sent again, unless its body is a stream (which cannot be read twice).
 * @throws Error when `options.origin` is not an http(s) origin, or when there is no `fetch` to wrap.
 */
export function fetchWithServiceAccountToken(source: TokenSource, options: FetchTokenOptions): typeof fetch {
  const origin = parseOrigin(options?.origin, HELPER);
  const header = options.header ?? 'authorization';
  const send = options.fetch ?? globalThis.fetch;
  if (typeof send !== 'function') throw new Error(`${HELPER}: no fetch to wrap (pass the fetch option)`);

  return async function fetchWithToken(input: FetchInput, init?: RequestInit): Promise<Response> {
    const request = input instanceof Request ? input : undefined;
    const headers = new Headers(init?.headers ?? request?.headers);
    if (originOf(urlOf(input)) !== origin || headers.has(header)) return send(input, init);

    const withToken = (): RequestInit => {
      const token = source.token();
      headers.set(header, header === 'authorization' ? `Bearer ${token}` : token);
      // 'error' stays: it refuses every redirect, which keeps the token here too.
      const redirect = (init?.redirect ?? request?.redirect) === 'error' ? 'error' : 'manual';
      return { ...init, headers, redirect };
    };
    const response = await send(input, withToken());
    const method = (init?.method ?? request?.method ?? 'GET').toUpperCase();
    if (response.status !== 401 || !IDEMPOTENT_METHODS.has(method) || !replayable(request, init)) return response;
    // The first answer's body is not read: releasing it frees the connection for the retry.
    await response.body?.cancel();
    await source.refresh();
    return send(input, withToken());
  };
}

function urlOf(input: FetchInput): string {
  if (typeof input === 'string') return input;
  return input instanceof URL ? input.href : input.url;
}

/** Whether the request's body can be sent a second time: none, or one given in `init` that is not a stream. */
function replayable(request: Request | undefined, init: RequestInit | undefined): boolean {
  const body = init?.body;
  if (body === undefined || body === null) return !request?.body;
  return !(body instanceof ReadableStream || Symbol.asyncIterator in Object(body));
}
