import { connect, createServer, type Socket } from 'node:net';

/**
 * Lets the containers reach the control plane, which listens on 127.0.0.1 only: a TCP relay on the Docker
 * network's gateway address (TLS passes through untouched). It can hold what the services send to the API
 * server, to keep a request in flight inside a service for as long as a test needs.
 */
export class ApiServerRelay {
  private readonly sockets = new Set<Socket>();
  private held: Array<() => void> | undefined;
  private onHeld: (() => void) | undefined;

  private readonly server = createServer((client) => this.relay(client));
  port = 0;

  private constructor(
    readonly host: string,
    private readonly target: { host: string; port: number },
  ) {}

  static async start(host: string, target: { host: string; port: number }): Promise<ApiServerRelay> {
    const relay = new ApiServerRelay(host, target);
    await new Promise<void>((resolve, reject) => {
      relay.server.once('error', reject);
      relay.server.listen(0, host, resolve);
    });
    const address = relay.server.address();
    relay.port = typeof address === 'object' && address ? address.port : 0;
    return relay;
  }

  /** From now on, keeps what the services send to the API server; resolves once something was kept. */
  hold(): Promise<void> {
    this.held = [];
    return new Promise((resolve) => (this.onHeld = resolve));
  }

  /** Sends on what was kept, in order, and stops holding. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    this.onHeld = undefined;
    for (const send of held) send();
  }

  async close(): Promise<void> {
    this.release();
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private relay(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const send = (action: () => void) => {
      if (!this.held) return action();
      this.held.push(action);
      this.onHeld?.();
    };
    client.on('data', (chunk) => send(() => upstream.write(chunk)));
    client.on('end', () => send(() => upstream.end()));
    upstream.pipe(client);
  }
}
