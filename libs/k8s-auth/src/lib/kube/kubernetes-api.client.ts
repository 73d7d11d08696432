import { KubeConfig } from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https';
import { AuthenticationUnavailableError } from '../authn/authentication.types';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';
import { logSafe } from '../observability/log-safe';

/**
 * Why a call failed: `unavailable` (no connection, timeout, 429, 5xx: worth a retry later),
 * `forbidden` (this service's own credentials may not do it), `rejected` (any other 4xx).
 */
export type KubernetesApiFailure = 'unavailable' | 'forbidden' | 'rejected';

/** The options the client reads, resolved and checked at start-up. */
export type KubernetesApiOptions = Pick<
  ResolvedOptions,
  'kubeconfig' | 'requestTimeoutMs' | 'retries' | 'maxReviewsInFlight' | 'maxAccessReviewsInFlight'
>;

export class KubernetesApiError extends Error {
  override readonly name = 'KubernetesApiError';
  constructor(
    readonly failure: KubernetesApiFailure,
    message: string,
    readonly statusCode?: number,
  ) {
    super(message);
  }
}

/**
 * The error a review answers with when the API server gives none: it names the missing ClusterRoleBinding when this
 * service's own credentials may not ask (logged as an error: only an operator can fix it).
 */
export function reviewUnavailable(
  review: 'TokenReview' | 'SubjectAccessReview',
  err: unknown,
  logger: { error(message: string): void; warn(message: string): void },
): AuthenticationUnavailableError {
  if (err instanceof KubernetesApiError && err.failure === 'forbidden') {
    const message =
      `The API server refused this service's ${review} (${err.message}). Its service account needs the ` +
      'ClusterRole system:auth-delegator: create a ClusterRoleBinding of system:auth-delegator to it.';
    logger.error(message);
    return new AuthenticationUnavailableError(message);
  }
  const message = `${review} failed: ${err instanceof Error ? err.message : String(err)}`;
  logger.warn(message);
  return new AuthenticationUnavailableError(message);
}

/**
 * Loads the client configuration: `kubeconfig` if given; else in-cluster credentials inside a pod; else `$KUBECONFIG`,
 * else `~/.kube/config`. Throws, saying where it looked, when none of them is there: client-node would otherwise fall
 * back to `http://localhost:8080` and every call would fail later with an unrelated message.
 */
export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const config = new KubeConfig();
  const env = process.env;
  const inCluster = Boolean(env['KUBERNETES_SERVICE_HOST']) && !env['KUBECONFIG'];
  // HOME first, as client-node's loadFromDefault looks there.
  const defaultFile = join(env['HOME'] || homedir(), '.kube', 'config');
  try {
    if (kubeconfig) config.loadFromFile(kubeconfig);
    else if (inCluster) config.loadFromCluster();
    else if (env['KUBECONFIG'] || existsSync(defaultFile)) config.loadFromDefault();
    else {
      throw new Error(
        'found no credentials: no kubeconfig option, not in a pod (KUBERNETES_SERVICE_HOST is not set), ' +
          `KUBECONFIG is not set, and ${defaultFile} does not exist`,
      );
    }
  } catch (err) {
    const where = kubeconfig ?? (inCluster ? 'in-cluster credentials' : (env['KUBECONFIG'] ?? defaultFile));
    throw new Error(
      `Cannot load a Kubernetes client configuration (${where}): ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const server = config.getCurrentCluster()?.server;
  if (!server) throw new Error(`No Kubernetes cluster in the client configuration (${kubeconfig ?? 'default'})`);
  return config;
}

/**
 * The one way this library talks to the API server: JSON over a single keep-alive agent (so a review
 * costs no TLS handshake), a deadline on every call, and bounded retries with backoff for failures
 * that a retry can fix. `@kubernetes/client-node` supplies the configuration and credentials (and
 * re-reads rotated in-cluster tokens); its generated clients open a new agent per call, so they are
 * not used here.
 */
@Injectable()
export class KubernetesApiClient implements OnApplicationShutdown {
  private readonly timeoutMs: number;
  private readonly retries: number;
  private loaded: { config: KubeConfig; server: URL } | undefined;
  private agent: HttpsAgent | HttpAgent | undefined;

  constructor(@Inject(RESOLVED_OPTIONS) private readonly options: KubernetesApiOptions) {
    this.timeoutMs = options.requestTimeoutMs;
    this.retries = options.retries;
  }

  /**
   * Loads the client configuration now, so that a service that reviews tokens stops at start-up, saying where it
   * looked, rather than answering every token with 503.
   * @throws Error when there are no usable credentials; it names the test double, for tests that need no API server.
   */
  checkConfiguration(): void {
    try {
      this.connection();
    } catch (err) {
      throw new Error(
        `${err instanceof Error ? err.message : String(err)}. Tests that need no API server replace the ` +
          'authenticator: overrideProvider(TOKEN_AUTHENTICATOR).useValue(fakeTokenAuthenticator({ identities })), ' +
          'from @k8s-auth/nestjs/testing',
        { cause: err },
      );
    }
  }

  /**
   * The client configuration these calls use, for a caller that needs its own connection to the same API server with
   * the same credentials (a watch). Loaded on first use: an app that only reads a projected token file needs no
   * kubeconfig.
   */
  kubeConfig(): KubeConfig {
    return this.connection().config;
  }

  private get server(): URL {
    return this.connection().server;
  }

  private connection(): { config: KubeConfig; server: URL } {
    if (!this.loaded) {
      const config = loadKubeConfig(this.options.kubeconfig);
      this.loaded = { config, server: new URL(config.getCurrentCluster()?.server ?? '') };
    }
    return this.loaded;
  }

  /** POSTs `body` as JSON and returns the JSON answer. */
  create<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, JSON.stringify(body));
  }

  /**
   * GETs `path` (e.g. the API server's OIDC discovery documents) and returns the JSON answer. `accept` names the
   * media type when the API server serves another one than `application/json` (the JWKS: `application/jwk-set+json`).
   */
  get<T>(path: string, accept = 'application/json'): Promise<T> {
    return this.call<T>('GET', path, undefined, accept);
  }

  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    payload?: string,
    accept = 'application/json',
  ): Promise<T> {
    const deadline = Date.now() + this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.send<T>(method, path, payload, accept, deadline);
      } catch (err) {
        const retryable =
          err instanceof KubernetesApiError && err.failure === 'unavailable' && !/timed out/.test(err.message);
        const backoff = Math.min(1000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
        if (!retryable || attempt >= this.retries || Date.now() + backoff >= deadline) throw err;
        await new Promise((r) => setTimeout(r, backoff));
      }
    }
  }

  /** Whether `url` is on the API server this client talks to (same scheme, host and port). */
  isApiServer(url: URL): boolean {
    return url.origin === this.server.origin;
  }

  /**
   * After the HTTP server has closed (Nest calls this hook last), not at onModuleDestroy: requests
   * still in flight during a graceful shutdown need their reviews, and destroying the agent under
   * them would cut those calls and make them start over on new connections.
   */
  onApplicationShutdown(): void {
    this.agent?.destroy();
  }

  private async send<T>(
    method: 'GET' | 'POST',
    path: string,
    payload: string | undefined,
    accept: string,
    deadline: number,
  ): Promise<T> {
    const options: RequestOptions = {};
    // Fills in the credentials (and CA, client certificate) of the current user and cluster.
    await this.kubeConfig().applyToHTTPSOptions(options);
    const agent = this.agentFor(options);
    const secure = this.server.protocol === 'https:';
    const url = new URL(path, this.server);
    // For error messages, which are logged: a path may hold a name taken from a token.
    const where = logSafe(url.pathname, 200);
    const remaining = Math.max(1, deadline - Date.now());

    return new Promise<T>((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(
        url,
        {
          method,
          agent,
          headers: {
            ...(options.headers as Record<string, string> | undefined),
            accept,
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
          ...(options.auth ? { auth: options.auth } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(new KubernetesApiError('unavailable', `${where}: ${err.message}`)));
          res.on('end', () => {
            clearTimeout(timer);
            const status = res.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString('utf8');
            if (status >= 200 && status < 300) {
              try {
                resolve(JSON.parse(text) as T);
              } catch {
                reject(new KubernetesApiError('unavailable', `${where}: the answer is not JSON`, status));
              }
              return;
            }
            reject(
              new KubernetesApiError(failureOf(status), `${where}: HTTP ${status}: ${statusMessage(text)}`, status),
            );
          });
        },
      );
      const timer = setTimeout(
        () => req.destroy(new Error(`timed out after ${Math.round(this.timeoutMs)} ms`)),
        remaining,
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new KubernetesApiError('unavailable', `${this.server.origin}${where}: ${err.message}`));
      });
      req.end(payload);
    });
  }

  private agentFor(options: RequestOptions): HttpsAgent | HttpAgent {
    if (this.agent) return this.agent;
    const common = {
      keepAlive: true,
      maxSockets: maxConnections(this.options),
      maxFreeSockets: 16,
      scheduling: 'lifo' as const,
    };
    this.agent =
      this.server.protocol === 'https:'
        ? new HttpsAgent({ ...common, ...tlsOptionsOf(options) })
        : new HttpAgent(common);
    return this.agent;
  }
}

/**
 * The TLS settings of the kubeconfig's cluster and user (CA, client certificate), as client-node filled them into
 * `options`, for a connection of this library's own.
 */
export function tlsOptionsOf(
  options: RequestOptions,
): Pick<RequestOptions, 'ca' | 'cert' | 'key' | 'pfx' | 'passphrase' | 'servername' | 'rejectUnauthorized'> {
  const { ca, cert, key, pfx, passphrase, servername, rejectUnauthorized } = options;
  return {
    ca,
    cert,
    key,
    pfx,
    passphrase,
    servername,
    // Unset unless the kubeconfig says so: Node's default (verify) stands.
    ...(rejectUnauthorized !== undefined ? { rejectUnauthorized } : {}),
  };
}

/** Calls other than reviews that may be under way at once: the signing keys, token requests, watches' lists. */
const OTHER_CALLS = 16;

/**
 * Connections the agent opens at most: one per review either bound lets through, and room for the other calls, so
 * that reviews of one kind holding every connection cannot make the other kind queue behind them.
 */
export function maxConnections(
  options: Pick<ResolvedOptions, 'maxReviewsInFlight' | 'maxAccessReviewsInFlight'>,
): number {
  return options.maxReviewsInFlight + options.maxAccessReviewsInFlight + OTHER_CALLS;
}

function failureOf(status: number): KubernetesApiFailure {
  if (status === 429 || status >= 500) return 'unavailable';
  if (status === 401 || status === 403) return 'forbidden';
  return 'rejected';
}

/**
 * The `message` of a Kubernetes Status object, escaped for the logs it goes to: it names users and resources, never
 * credentials, but may repeat what a request asked about.
 */
function statusMessage(text: string): string {
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === 'string') return logSafe(message, 500);
  } catch {
    // not a Status object
  }
  return logSafe(text, 200);
}
