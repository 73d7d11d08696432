import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

/** A loopback HTTP server that records every request it receives. */
export interface RecordingServer {
  /** `http://host:port` */
  url: string;
  /** The requests received so far, oldest first. */
  seen: RecordedRequest[];
  /** How it answers; replace it to answer otherwise (a redirect, an error). */
  respond: (req: IncomingMessage, res: ServerResponse) => void;
  close(): Promise<void>;
}

/**
 * Starts a {@link RecordingServer} on `host` (any loopback address: 127.0.0.1 and 127.0.0.2 are two origins), for
 * tests of what an HTTP client sends where, such as which origins receive a service's token.
 */
export async function startRecordingServer(host = '127.0.0.1', body = 'ok'): Promise<RecordingServer> {
  const recording: RecordingServer = {
    url: '',
    seen: [],
    respond: (_req, res) => res.end(body),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = createServer((req, res) => {
    recording.seen.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    recording.respond(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  recording.url = `http://${host}:${(server.address() as { port: number }).port}`;
  return recording;
}
