import { connect, createServer, type Server, type Socket } from 'node:net';

/** Where an {@link ApiServerProxy} listens and what it forwards to. */
export interface ApiServerProxyOptions {
  /** The address to listen on: loopback by default; a Docker network's gateway lets containers reach it. */
  listenHost?: string;
  /** The API server (or any TCP server) the bytes go to. */
  target: { host: string; port: number };
}

/** A stop on the traffic: chunks wait at it while it is closed, in order. */
class Gate {
  private opened: Promise<void> | undefined;
  private open: (() => void) | undefined;
  private onWait: (() => void) | undefined;
  private waiting = 0;

  get closed(): boolean {
    return this.opened !== undefined;
  }

  /** Keeps chunks from now on; `onWait` runs once a chunk waits (at once if one already does). */
  close(onWait?: () => void): void {
    this.onWait = onWait;
    if (!this.opened) this.opened = new Promise<void>((resolve) => (this.open = resolve));
    if (this.waiting > 0) onWait?.();
  }

  reopen(): void {
    this.open?.();
    this.opened = undefined;
    this.open = undefined;
    this.onWait = undefined;
  }

  /** Resolves once the gate is open: at once if it is. */
  async pass(): Promise<void> {
    const opened = this.opened;
    if (!opened) return;
    this.waiting++;
    this.onWait?.();
    await opened;
    this.waiting--;
  }
}

/**
 * A TCP proxy in front of the API server for the workspace's tests, so that they make it slow, silent, down or
 * hold a request back on cue, whatever the machine's speed. TLS passes through untouched: clients still see the API
 * server's certificate, which names the address, not the port. Chunks keep their order in each direction, and a FIN
 * goes through only after the bytes before it.
 */
export class ApiServerProxy {
  /** Delay applied to every chunk from the server from now on, so that the API server looks slow yet healthy. */
  delayMs = 0;
  /** Most client connections open at once since {@link resetPeak} (or the start): what a client's pool allowed. */
  peakConnections = 0;
  private connections = 0;
  private inFlight = 0;
  private server: Server | undefined;
  private listenPort = 0;
  private readonly sockets = new Set<Socket>();
  /** Closed by hold(): client to server only. */
  private readonly upstream = new Gate();
  /** Closed by freeze(): both ways. */
  private readonly frozen = new Gate();
  private readonly listenHost: string;
  private readonly target: { host: string; port: number };

  constructor(options: ApiServerProxyOptions) {
    const { port, host } = options.target;
    if (!Number.isInteger(port) || port <= 0 || port > 65_535) {
      throw new Error(`ApiServerProxy: target.port must be a TCP port, got ${String(port)}`);
    }
    if (!host) throw new Error('ApiServerProxy: target.host is required');
    this.target = { host, port };
    this.listenHost = options.listenHost ?? '127.0.0.1';
  }

  /** Client connections open now. */
  get openConnections(): number {
    return this.connections;
  }

  /**
   * Chunks and FINs received and not yet sent on (delayed, held, frozen or about to go): lets a test see that the
   * traffic it stops has reached the proxy.
   */
  get pending(): number {
    return this.inFlight;
  }

  /** The port it listens on, once started. */
  get port(): number {
    return this.listenPort;
  }

  /** The address to give clients as a kubeconfig `server`. */
  get url(): string {
    const host = this.listenHost.includes(':') ? `[${this.listenHost}]` : this.listenHost;
    return `https://${host}:${this.listenPort}`;
  }

  /** Listens on a free port of `listenHost`; resolves to {@link url}. */
  async start(): Promise<string> {
    const server = createServer({ allowHalfOpen: true }, (client) => this.pipe(client));
    this.server = server;
    await this.listen(0);
    this.listenPort = (server.address() as { port: number }).port;
    return this.url;
  }

  /**
   * Keeps what clients send from now on, in order, until release(), so that a test decides when the API server sees
   * a request. Resolves once something is kept, that is once a request is known to be on its way.
   */
  hold(): Promise<void> {
    return new Promise((resolve) => this.upstream.close(resolve));
  }

  /** Sends on what was kept, in order, and what follows. */
  release(): void {
    this.upstream.reopen();
  }

  /**
   * Stops all forwarding, both ways, on every connection, old and new, with no FIN or RST, as a dead node or a
   * dropped route does, until heal().
   */
  freeze(): void {
    this.frozen.close();
  }

  /** Lets what was held, and what follows, through again, in order. */
  heal(): void {
    this.frozen.reopen();
  }

  /** Resets every connection and stops listening, as a stopped API server does: new connections are refused. */
  async down(): Promise<void> {
    const closed = this.closeServer();
    for (const socket of this.sockets) socket.resetAndDestroy();
    await closed;
  }

  /** Listens again, on the same port. */
  async up(): Promise<void> {
    if (!this.server || this.server.listening) return;
    await this.listen(this.listenPort);
  }

  /** Starts counting {@link peakConnections} again from the connections open now. */
  resetPeak(): void {
    this.peakConnections = this.connections;
  }

  /** Lets anything held go, closes every connection and stops listening; safe to call more than once. */
  async stop(): Promise<void> {
    this.release();
    this.heal();
    for (const socket of this.sockets) socket.destroy();
    await this.closeServer();
  }

  private listen(port: number): Promise<void> {
    const server = this.server as Server;
    return new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.listenHost, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  private closeServer(): Promise<void> {
    return new Promise<void>((resolve) => (this.server?.listening ? this.server.close(() => resolve()) : resolve()));
  }

  private pipe(client: Socket): void {
    this.connections++;
    this.peakConnections = Math.max(this.peakConnections, this.connections);
    client.on('close', () => this.connections--);
    const upstream = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    for (const [socket, other] of [
      [client, upstream],
      [upstream, client],
    ]) {
      this.sockets.add(socket);
      // An error ends both; a clean close has already sent its FIN on through the chain.
      socket.on('error', () => undefined);
      socket.on('close', (hadError) => {
        this.sockets.delete(socket);
        if (hadError) other.destroy();
      });
    }
    this.forward(client, upstream, true);
    this.forward(upstream, client, false);
  }

  /** Writes each chunk, then the FIN, once (from the server) its delay has passed and no gate in its way is closed. */
  private forward(from: Socket, to: Socket, toServer: boolean): void {
    const gates = toServer ? [this.upstream, this.frozen] : [this.frozen];
    let previous = Promise.resolve();
    const after = (deliver: () => void) => {
      const due = toServer ? 0 : Date.now() + this.delayMs;
      this.inFlight++;
      previous = previous.then(async () => {
        const wait = due - Date.now();
        if (wait > 0 && !to.destroyed) await delay(wait, to);
        // Checked again after each wait: a gate may close while a chunk waits at another.
        for (let gate = gates.find((g) => g.closed); gate; gate = gates.find((g) => g.closed)) await gate.pass();
        if (!to.destroyed && !to.writableEnded) deliver();
        this.inFlight--;
      });
    };
    from.on('data', (chunk) => after(() => void to.write(chunk)));
    from.on('end', () => after(() => void to.end()));
  }
}

/** Waits `ms`, or less if `to` closes first: a closed connection keeps no timer alive. */
function delay(ms: number, to: Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      to.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    to.once('close', done);
  });
}
