import type { KubeConfig } from '@kubernetes/client-node';
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
  type SecureClientSessionOptions,
} from 'node:http2';
import type { RequestOptions } from 'node:https';
import { tlsOptionsOf } from './kubernetes-api.client';

/** A connection that has not answered a PING (or finished its TLS handshake) for this long is closed. */
const DEAD_AFTER_MS = 10_000;

/**
 * One HTTP/2 connection to the API server, sending a PING every `pingIntervalMs`. An answered PING proves that
 * everything the API server wrote on the connection before it received that PING has arrived, so what the watches on
 * it hold is complete as of the moment the PING was sent ({@link provenAt}).
 */
export class PingedSession {
  /** When the last PING that was answered had been sent (ms since the epoch). */
  private proven = Number.NEGATIVE_INFINITY;
  private pingSentAt: number | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly session: ClientHttp2Session,
    pingIntervalMs: number,
  ) {
    // Until the handshake ends it counts as a PING awaiting its answer: one that hangs closes the session too.
    this.pingSentAt = Date.now();
    session.once('connect', () => {
      this.pingSentAt = undefined;
      this.ping();
    });
    this.timer = setInterval(() => this.ping(), pingIntervalMs);
    this.timer.unref();
    session.once('close', () => clearInterval(this.timer));
  }

  /** Sent-time of the last answered PING; -Infinity once the session is closed. */
  provenAt(): number {
    return this.session.destroyed || this.session.closed ? Number.NEGATIVE_INFINITY : this.proven;
  }

  get usable(): boolean {
    return !this.session.destroyed && !this.session.closed;
  }

  private ping(): void {
    if (!this.usable) return;
    const now = Date.now();
    if (this.pingSentAt !== undefined) {
      if (now - this.pingSentAt > DEAD_AFTER_MS) {
        this.session.destroy(new Error(`no answer from the API server for ${DEAD_AFTER_MS / 1000} s`));
      }
      return;
    }
    const sentAt = now;
    this.pingSentAt = sentAt;
    this.session.ping((err) => {
      if (this.pingSentAt === sentAt) this.pingSentAt = undefined;
      if (!err) this.proven = Math.max(this.proven, sentAt);
    });
  }
}

/** An open stream and the connection that carries it. */
export interface OpenedStream {
  stream: ClientHttp2Stream;
  headers: IncomingHttpHeaders;
  connection: PingedSession;
}

/**
 * The watches' connection to the API server: HTTP/2, so that one PING proves every watch on it alive, as client-go's
 * HTTP/2 health check does. A new connection is made when the last one has closed or stopped answering.
 */
export class WatchConnection {
  private current: PingedSession | undefined;
  private closed = false;

  constructor(
    private readonly config: KubeConfig,
    private readonly pingIntervalMs: number,
  ) {}

  /**
   * Why this API server cannot be watched over HTTP/2 (a plain `http:` server, or one behind a proxy of the
   * kubeconfig's), or undefined when it can.
   */
  unsupportedReason(): string | undefined {
    const cluster = this.config.getCurrentCluster();
    if (!cluster) return 'the kubeconfig names no cluster';
    if (new URL(cluster.server).protocol !== 'https:') return `${cluster.server} is not an https: server`;
    if (cluster.proxyUrl) return `the kubeconfig reaches ${cluster.server} through the proxy ${cluster.proxyUrl}`;
    return undefined;
  }

  /** Sends a GET of `path` with this service's credentials and resolves once the API server answers its headers. */
  async get(path: string, accept: string): Promise<OpenedStream> {
    if (this.closed) throw new Error('the watch connection is closed');
    const options: RequestOptions = {};
    // Credentials (re-read when rotated in a pod), CA and client certificate of the current user and cluster.
    await this.config.applyToHTTPSOptions(options);
    const connection = this.connection(options);
    const headers: Record<string, string> = { accept };
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      if (value !== undefined) headers[name.toLowerCase()] = String(value);
    }
    if (options.auth) headers['authorization'] = `Basic ${Buffer.from(options.auth).toString('base64')}`;
    const stream = connection.session.request({
      ...headers,
      [constants.HTTP2_HEADER_METHOD]: 'GET',
      [constants.HTTP2_HEADER_PATH]: path,
    });
    return new Promise<OpenedStream>((resolve, reject) => {
      stream.once('response', (responseHeaders) => {
        stream.off('error', reject);
        resolve({ stream, headers: responseHeaders, connection });
      });
      stream.once('error', reject);
      stream.once('close', () => reject(new Error(`the stream closed before the API server answered`)));
    });
  }

  /** Closes the connection; streams on it end. */
  close(): void {
    this.closed = true;
    this.current?.session.destroy();
    this.current = undefined;
  }

  private connection(options: RequestOptions): PingedSession {
    if (this.current?.usable) return this.current;
    const server = this.config.getCurrentCluster()?.server ?? '';
    const session = connect(server, tlsOptionsOf(options) as SecureClientSessionOptions);
    // Failures reach the streams on it; an error on the session itself must not go unheard.
    session.on('error', () => undefined);
    // After a GOAWAY (the API server shutting down) new streams go to a new connection.
    session.once('goaway', () => {
      if (this.current?.session === session) this.current = undefined;
    });
    session.unref();
    this.current = new PingedSession(session, this.pingIntervalMs);
    return this.current;
  }
}
