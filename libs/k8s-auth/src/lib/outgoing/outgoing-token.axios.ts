import type { AxiosError, AxiosInstance, InternalAxiosRequestConfig } from 'axios';
import { IDEMPOTENT_METHODS, originOf, parseOrigin } from './origins';
import type { TokenSource } from './token-source';

/**
 * What `attachServiceAccountToken` needs of an axios 1.x instance (an `AxiosInstance`, such as `HttpService.axiosRef`
 * of `@nestjs/axios` or what `axios.create()` returns). Written out instead of naming axios's own type, so that the
 * package's declarations compile without axios installed: it is an optional peer dependency.
 */
export interface AxiosInstanceLike {
  defaults: { baseURL?: string };
  getUri(config?: object): string;
  request(config: object): Promise<unknown>;
  // Any `use` method: its handlers are typed by axios itself, which these declarations cannot name.
  interceptors: { request: { use(...handlers: never[]): unknown }; response: { use(...handlers: never[]): unknown } };
}

export interface AttachTokenOptions {
  /** How the token is sent. @default 'authorization' (`Authorization: Bearer <token>`) */
  header?: 'authorization' | 'x-client-id';
  /**
   * The origins (`scheme://host[:port]`) the token is sent to; requests to any other origin get no token.
   * @default the origin of the instance's `baseURL`
   */
  origins?: readonly string[];
  /**
   * Follow redirects of requests that carry the token. The token is removed before a hop to any origin other than
   * the request's. Only axios's Node http adapter follows: with the fetch adapter they are never followed.
   * @default false (a 3xx is the answer)
   */
  followRedirects?: boolean;
}

// String keys: axios copies a config's own string keys when it sends it again, not its symbols.
const CARRIES_TOKEN = 'k8sAuthCarriesToken';
const RETRIED = 'k8sAuthRetried';

type TokenConfig = InternalAxiosRequestConfig & { [CARRIES_TOKEN]?: boolean; [RETRIED]?: boolean };
type BeforeRedirect = NonNullable<InternalAxiosRequestConfig['beforeRedirect']>;

/**
 * Sends `source`'s token with those requests of `instance` whose origin is the one it is meant for: the origin of the
 * instance's `baseURL`, or one of `options.origins`. The instance is the callee's own (e.g. the `axiosRef` of
 * `HttpModule.register({ baseURL })` in `@nestjs/axios`), never axios's process-wide default. Requests that carry the
 * token do not follow redirects unless `followRedirects` is set. On a 401 the token may just have been rotated: the
 * source is re-read once and an idempotent request is sent again.
 * @throws Error without a `baseURL` or `origins`, or when one of them is not an http(s) origin.
 */
export function attachServiceAccountToken(
  instance: AxiosInstanceLike,
  source: TokenSource,
  options: AttachTokenOptions = {},
): void {
  // Only axios instances have that shape in practice; the body uses axios's own types.
  const axios = instance as unknown as AxiosInstance;
  const header = options.header ?? 'authorization';
  const allowed = allowedOrigins(axios, options.origins);
  const follow = options.followRedirects ?? false;

  axios.interceptors.request.use((config: TokenConfig) => {
    const origin = originOf(axios.getUri(config));
    if (origin === undefined || !allowed.has(origin)) {
      // A config sent before (e.g. an error's, re-sent elsewhere) must not take its token along.
      if (config[CARRIES_TOKEN]) {
        config.headers.delete(header);
        config[CARRIES_TOKEN] = false;
      }
      return config;
    }
    const token = source.token();
    config.headers.set(header, header === 'authorization' ? `Bearer ${token}` : token);
    config[CARRIES_TOKEN] = true;
    // The fetch adapter would follow with X-Client-Id still set: it never follows with the token.
    config.fetchOptions = { ...config.fetchOptions, redirect: 'manual' };
    if (!follow) {
      config.maxRedirects = 0;
    } else {
      const callers = config.beforeRedirect;
      config.beforeRedirect = ((hop, response) => {
        callers?.(hop, response);
        // follow-redirects drops Authorization on a change of host only, never X-Client-Id.
        if (originOf(String(hop['href'])) !== origin) dropHeader(hop['headers'], header);
      }) as BeforeRedirect;
    }
    return config;
  });

  axios.interceptors.response.use(undefined, async (error: AxiosError) => {
    const config = error.config as TokenConfig | undefined;
    const method = (config?.method ?? 'get').toUpperCase();
    if (
      !config?.[CARRIES_TOKEN] ||
      error.response?.status !== 401 ||
      config[RETRIED] ||
      !IDEMPOTENT_METHODS.has(method)
    ) {
      throw error;
    }
    config[RETRIED] = true;
    await source.refresh();
    // Sent through the interceptors again: the token is set anew for the same origin.
    return axios.request(config);
  });
}

function allowedOrigins(axios: AxiosInstance, origins: readonly string[] | undefined): Set<string> {
  if (origins !== undefined) {
    if (origins.length === 0) throw new Error('attachServiceAccountToken: the origins option lists no origin');
    return new Set(origins.map((o) => parseOrigin(o, 'attachServiceAccountToken')));
  }
  const baseURL = axios.defaults.baseURL;
  if (!baseURL) {
    throw new Error(
      "attachServiceAccountToken needs the instance's baseURL or the origins option: a token is only sent to the " +
        'origins it is meant for',
    );
  }
  const origin = originOf(baseURL);
  if (origin === undefined) {
    throw new Error(`attachServiceAccountToken: the baseURL '${baseURL}' is not an absolute http(s) URL`);
  }
  return new Set([origin]);
}

function dropHeader(headers: unknown, name: string): void {
  if (typeof headers !== 'object' || headers === null) return;
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === name) delete (headers as Record<string, unknown>)[key];
  }
}
