import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy on loopback in front of the API server, forwarding bytes both ways. What the server sends back is held
 * for `delayMs` first, so the API server looks slow while staying healthy; `freeze()` stops all forwarding, both
 * ways, on every connection, old and new, with no FIN or RST, as a dead node or a dropped route does, until
 * `heal()`; `down()` resets every connection and refuses new ones, as a stopped API server does, until `up()`. TLS
 * passes through untouched: the client still sees kube-apiserver's certificate, which covers 127.0.0.1 whatever the
 * port.
 */
export class DelayProxy {
  /** Delay applied to every chunk from the server from now on; order is always kept. */
  delayMs = 0;
  /** Most client connections open at once since {@link resetPeak} (or the start). */
  peakConnections = 0;
  private connections = 0;
  private server: Server | undefined;
  private port = 0;
  private readonly sockets = new Set<Socket>();
  /** Resolved while traffic flows; pending while frozen. */
  private flowing: Promise<void> = Promise.resolve();
  private thaw: (() => void) | undefined;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    const server = createServer((client) => this.pipe(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  /** Resets the connections open and stops listening: new ones are refused. */
  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    for (const socket of this.sockets) socket.resetAndDestroy();
    await closed;
  }

  /** Listens again, on the same port. */
  async up(): Promise<void> {
    const server = this.server;
    if (!server || server.listening) return;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** Holds every byte, both ways, until heal(): connections stay open and silent. */
  freeze(): void {
    if (this.thaw) return;
    this.flowing = new Promise<void>((resolve) => (this.thaw = resolve));
  }

  /** Lets what was held, and what follows, through again, in order. */
  heal(): void {
    this.thaw?.();
    this.thaw = undefined;
    this.flowing = Promise.resolve();
  }

  async stop(): Promise<void> {
    this.heal();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server?.listening ? this.server.close(() => resolve()) : resolve()));
  }

  /** Starts counting {@link peakConnections} again from the connections open now. */
  resetPeak(): void {
    this.peakConnections = this.connections;
  }

  private pipe(client: Socket): void {
    this.connections++;
    this.peakConnections = Math.max(this.peakConnections, this.connections);
    client.on('close', () => this.connections--);
    const upstream = connect(this.targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
      socket.on('error', () => undefined);
    }
    this.forward(client, upstream, false);
    this.forward(upstream, client, true);
  }

  /** Writes each chunk once traffic flows and, from the server, its delay has passed: never before the one before. */
  private forward(from: Socket, to: Socket, delayed: boolean): void {
    let previous = Promise.resolve();
    from.on('data', (chunk) => {
      const due = delayed ? Date.now() + this.delayMs : 0;
      previous = previous.then(async () => {
        await this.flowing;
        const wait = due - Date.now();
        if (wait > 0 && !to.destroyed) await new Promise((resolve) => setTimeout(resolve, wait));
        if (!to.destroyed) to.write(chunk);
      });
    });
  }
}
