import { constants } from 'node:http2';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { OpenedStream, PingedSession, WatchConnection } from './watch-connection';

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

/** What a watch the API server has accepted reports. */
export interface WatchHandlers {
  onEvent(event: WatchEvent): void;
  /** Called once: without an error when the server ended the watch (its `timeoutSeconds`), else with one. */
  onEnd(error?: WatchError): void;
}

/** An open watch: how to close it, and the connection whose PINGs prove it alive. */
export interface OpenWatch {
  close(): void;
  connection: PingedSession;
}

/**
 * Opens one watch request (`path` with `watch=1` in its query) on the watches' HTTP/2 connection. Events are JSON
 * lines. client-node's `Watch` is not used because it sends no `Accept` header of the caller's, so it cannot ask for
 * metadata only (no spec or status held per object; `bench/watch-memory.ts` measures it), and
 * it speaks HTTP/1.1, where nothing proves a silent connection alive. `deadlineMs` bounds the whole request, as a
 * backstop to the connection's PINGs. `onEnd` is not called after `close()`.
 * @throws WatchError when the request cannot be sent or the API server refuses the watch.
 */
export async function openWatch(
  connection: WatchConnection,
  path: string,
  deadlineMs: number,
  handlers: WatchHandlers,
): Promise<OpenWatch> {
  let opened: OpenedStream;
  try {
    opened = await connection.get(path, METADATA_ONLY_WATCH);
  } catch (err) {
    throw new WatchError(`${pathOf(path)}: ${(err as Error).message}`);
  }
  const { stream, headers } = opened;
  const status = Number(headers[':status']);
  if (status !== 200) {
    const message = await readStatus(stream);
    throw new WatchError(`${pathOf(path)}: HTTP ${status}: ${message}`, status);
  }
  let ended = false;
  const end = (error?: WatchError) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    stream.close();
    handlers.onEnd(error);
  };
  const broken = (err: Error) => end(new WatchError(`${pathOf(path)}: ${err.message}`));
  stream.on('error', broken);
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  // readline passes the stream's errors on: unheard, they would be thrown.
  lines.on('error', broken);
  lines.on('line', (line) => {
    if (ended || line === '') return;
    let event: WatchEvent;
    try {
      event = JSON.parse(line) as WatchEvent;
    } catch {
      end(new WatchError(`${pathOf(path)}: a watch event is not JSON`));
      return;
    }
    handlers.onEvent(event);
  });
  // A stream the server ended cleanly ends the watch normally; one reset or cut by a closed connection does not.
  stream.on('close', () =>
    end(
      stream.rstCode === constants.NGHTTP2_NO_ERROR && stream.readableEnded
        ? undefined
        : new WatchError(`${pathOf(path)}: connection closed`),
    ),
  );
  const timer = setTimeout(() => end(new WatchError(`${pathOf(path)}: silent past its deadline`)), deadlineMs);
  timer.unref();
  return {
    connection: opened.connection,
    close: () => {
      ended = true;
      clearTimeout(timer);
      stream.close();
    },
  };
}

function pathOf(path: string): string {
  return path.split('?')[0];
}

/** The `message` of the Kubernetes Status an error answer carries; it names resources, never credentials. */
function readStatus(res: Readable): Promise<string> {
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
