import type { Server, ServerResponse } from 'node:http';

/**
 * Makes a server's shutdown prompt as well as graceful. Node's `server.close()` stops accepting
 * connections and closes the idle keep-alive ones, but a connection whose request is in flight stays
 * open after its answer until the keep-alive timeout (Node's 5 s, Fastify's 72 s), so the process
 * lingers that long after its last answer. From `drain()` on, every answer not yet sent says
 * `Connection: close` and idle connections are closed, so the server closes as soon as the requests
 * in flight are answered.
 */
export function drainable(server: Server): { drain(): void } {
  let draining = false;
  const pending = new Set<ServerResponse>();
  // Before the framework's listener, so that an answer written at once still gets the header.
  server.prependListener('request', (_req, res: ServerResponse) => {
    if (draining) {
      res.setHeader('connection', 'close');
      return;
    }
    pending.add(res);
    res.once('close', () => pending.delete(res));
  });
  return {
    drain() {
      draining = true;
      for (const res of pending) if (!res.headersSent) res.setHeader('connection', 'close');
      pending.clear();
      server.closeIdleConnections();
    },
  };
}
