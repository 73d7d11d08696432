import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A TCP proxy on loopback in front of the API server, forwarding bytes both ways; what the server
 * sends back is held for `delayMs` first, so the API server looks slow while staying healthy. TLS
 * passes through untouched: the client still sees kube-apiserver's certificate, which covers
 * 127.0.0.1 whatever the port.
 */
export class DelayProxy {
  /** Delay applied to every chunk from the server from now on; order is always kept. */
  delayMs = 0;
  /** Most client connections open at once since {@link resetPeak} (or the start). */
  peakConnections = 0;
  private connections = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    const server = createServer((client) => this.pipe(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return (server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
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
    client.on('data', (chunk) => upstream.write(chunk));
    let releaseAt = 0;
    const held = new Set<NodeJS.Timeout>();
    client.on('close', () => held.forEach(clearTimeout));
    upstream.on('data', (chunk) => {
      // Never earlier than the chunk before it: a shorter delay set later must not reorder bytes.
      releaseAt = Math.max(Date.now() + this.delayMs, releaseAt);
      const wait = releaseAt - Date.now();
      if (wait <= 0) {
        client.write(chunk);
        return;
      }
      const timer = setTimeout(() => {
        held.delete(timer);
        client.write(chunk);
      }, wait);
      held.add(timer);
    });
  }
}
