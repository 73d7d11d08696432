import type { KubeConfig } from '@kubernetes/client-node';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';

/** The metadata of an object as a metadata-only watch or list gives it. */
export interface ObjectMetadata {
  name?: string;
  uid?: string;
  resourceVersion?: string;
  deletionTimestamp?: string;
}

/** One line of a watch: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, or `ERROR` with a Status as its object. */
export interface WatchEvent {
  type: string;
  object: { metadata?: ObjectMetadata; code?: number; message?: string };
}

/** A watch the API server refused (`statusCode`), or whose connection failed. */
export class WatchError extends Error {
  override readonly name = 'WatchError';
  constructor(
    message: string,
    readonly statusCode?: number,
  ) {
    super(message);
  }
}

/**
 * Metadata only (name, uid, resourceVersion, deletionTimestamp; no spec or status): what the API server sends for a
 * pod shrinks from kilobytes to a few hundred bytes. Plain JSON is the fallback of a server without it.
 */
export const METADATA_ONLY_WATCH = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json';
export const METADATA_ONLY_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json';

export interface WatchHandlers {
  /** The API server accepted the watch: events follow. */
  onOpen(): void;
  onEvent(event: WatchEvent): void;
  /** Called once: without an error when the server ended the watch (its `timeoutSeconds`), else with one. */
  onEnd(error?: WatchError): void;
}

/**
 * Opens one watch request (`path` with `watch=1` in its query) with `config`'s credentials, on a connection of its
 * own (a watch holds it for minutes; the review client's keep-alive pool stays free). Events are JSON lines.
 * client-node's `Watch` is not used because it sends no `Accept` header of the caller's, so it cannot ask for metadata
 * only (2.25 MB held for 10 000 pods, against 27.7 MB for whole objects, in `bench/watch-memory.ts`).
 * `deadlineMs` bounds the whole request: a connection that died without a reset (a network partition) is noticed
 * then, since a watch may stay silent for as long as nothing changes. Returns a function that closes the watch;
 * `onEnd` is not called after it.
 */
export async function openWatch(
  config: KubeConfig,
  path: string,
  deadlineMs: number,
  handlers: WatchHandlers,
): Promise<() => void> {
  const options: RequestOptions = {};
  // Credentials, CA and an agent for this cluster (client-node reads rotated in-cluster tokens again).
  await config.applyToHTTPSOptions(options);
  const url = new URL(path, config.getCurrentCluster()?.server ?? '');
  let ended = false;
  const end = (error?: WatchError) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    req.destroy();
    handlers.onEnd(error);
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const req: ClientRequest = send(url, {
    ...options,
    method: 'GET',
    headers: { ...(options.headers as Record<string, string> | undefined), accept: METADATA_ONLY_WATCH },
  });
  req.on('response', (res: IncomingMessage) => {
    if (res.statusCode !== 200) {
      readStatus(res).then((message) =>
        end(new WatchError(`${url.pathname}: HTTP ${res.statusCode}: ${message}`, res.statusCode)),
      );
      return;
    }
    handlers.onOpen();
    const broken = (err: Error) => end(new WatchError(`${url.pathname}: ${err.message}`));
    res.on('error', broken);
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    // readline passes the response's errors on: unheard, they would be thrown.
    lines.on('error', broken);
    lines.on('line', (line) => {
      if (ended || line === '') return;
      let event: WatchEvent;
      try {
        event = JSON.parse(line) as WatchEvent;
      } catch {
        end(new WatchError(`${url.pathname}: a watch event is not JSON`));
        return;
      }
      handlers.onEvent(event);
    });
    // Incomplete: the connection broke before the server finished the answer.
    res.on('close', () => end(res.complete ? undefined : new WatchError(`${url.pathname}: connection closed`)));
  });
  req.on('error', (err) => end(new WatchError(`${url.origin}${url.pathname}: ${err.message}`)));
  const timer = setTimeout(() => end(new WatchError(`${url.pathname}: silent past its deadline`)), deadlineMs);
  req.end();
  return () => {
    ended = true;
    clearTimeout(timer);
    req.destroy();
  };
}

/** The `message` of the Kubernetes Status an error answer carries; it names resources, never credentials. */
function readStatus(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', () => resolve(''));
    res.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        const message = (JSON.parse(text) as { message?: unknown }).message;
        resolve(typeof message === 'string' ? message.slice(0, 300) : text.slice(0, 200));
      } catch {
        resolve(text.slice(0, 200));
      }
    });
  });
}
