import type { AxiosError, AxiosInstance, InternalAxiosRequestConfig } from 'axios';
import type { TokenSource } from './token-source';

export interface AttachTokenOptions {
  /** How the token is sent. @default 'authorization' (`Authorization: Bearer <token>`) */
  header?: 'authorization' | 'x-client-id';
}

const IDEMPOTENT = new Set(['get', 'head', 'options', 'put', 'delete', 'trace']);
const RETRIED = Symbol('k8s-auth:retried');

type RetriableConfig = InternalAxiosRequestConfig & { [RETRIED]?: boolean };

/**
 * Sends `source`'s token with every request of `axios` (e.g. `HttpService.axiosRef` of
 * `@nestjs/axios`). On a 401 the token may just have been rotated: the source is re-read once and an
 * idempotent request is sent again.
 */
export function attachServiceAccountToken(
  axios: AxiosInstance,
  source: TokenSource,
  options: AttachTokenOptions = {},
): void {
  const header = options.header ?? 'authorization';
  const apply = (config: InternalAxiosRequestConfig) => {
    const token = source.token();
    config.headers.set(header, header === 'authorization' ? `Bearer ${token}` : token);
    return config;
  };
  axios.interceptors.request.use(apply);
  axios.interceptors.response.use(undefined, async (error: AxiosError) => {
    const config = error.config as RetriableConfig | undefined;
    const method = (config?.method ?? 'get').toLowerCase();
    if (!config || error.response?.status !== 401 || config[RETRIED] || !IDEMPOTENT.has(method)) throw error;
    config[RETRIED] = true;
    await source.refresh();
    return axios.request(apply(config));
  });
}
