import { connect, createServer, type Server, type Socket } from 'node:net';

// A TCP proxy in front of the API server for the integration specs (not part of the library: excluded from its
// build). TLS passes through untouched: the API server's certificate names the loopback address, not a port.

/**
 * Forwards connections to `127.0.0.1:targetPort`; while held, keeps every byte the client sends (in order) until
 * released, so that a test decides when the API server sees a request, whatever the machine's speed.
 */
export class HoldingProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Resolved while bytes flow; pending while held. */
  private flowing: Promise<void> = Promise.resolve();
  private thaw: (() => void) | undefined;

  constructor(private readonly targetPort: number) {}

  /** Listens on a loopback port; returns its address as a kubeconfig `server`. */
  async start(): Promise<string> {
    const server = createServer((client) => this.pipe(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  }

  /** Keeps what clients send from now on, until release(). */
  hold(): void {
    if (this.thaw) return;
    this.flowing = new Promise<void>((resolve) => (this.thaw = resolve));
  }

  /** Lets what was kept, and what follows, through. */
  release(): void {
    this.thaw?.();
    this.thaw = undefined;
    this.flowing = Promise.resolve();
  }

  async stop(): Promise<void> {
    this.release();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private pipe(client: Socket): void {
    const upstream = connect(this.targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    // Each chunk waits for the hold in force when it came, and for the chunks before it.
    let sent = Promise.resolve();
    client.on('data', (chunk) => {
      const flowing = this.flowing;
      sent = sent.then(() => flowing).then(() => void upstream.write(chunk));
    });
    client.on('end', () => void sent.then(() => upstream.end()));
  }
}
