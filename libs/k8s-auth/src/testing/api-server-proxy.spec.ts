import { connect, createServer, type Server, type Socket } from 'node:net';
import { ApiServerProxy } from './api-server-proxy';

// Plain sockets on loopback. Every verdict is a state (what arrived, what is kept, what is open), never a duration:
// the loops below only wait for a state, and Jest's own timeout ends a hung test.

/** A target that records what each connection sends and keeps its sockets for the test to answer on. */
class Target {
  readonly received: string[] = [];
  readonly ended: boolean[] = [];
  readonly sockets: Socket[] = [];
  private server: Server | undefined;

  async start(): Promise<number> {
    this.server = createServer({ allowHalfOpen: true }, (socket) => {
      const i = this.sockets.push(socket) - 1;
      this.received[i] = '';
      this.ended[i] = false;
      socket.on('data', (chunk) => (this.received[i] += chunk.toString()));
      socket.on('end', () => (this.ended[i] = true));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

/** A client that records what it gets and how its connection ends. */
interface Client {
  socket: Socket;
  received: string;
  ended: boolean;
  closed: boolean;
  error: NodeJS.ErrnoException | undefined;
}

function client(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const c: Client = { socket, received: '', ended: false, closed: false, error: undefined };
    socket.on('data', (chunk) => (c.received += chunk.toString()));
    socket.on('end', () => (c.ended = true));
    socket.on('close', () => (c.closed = true));
    socket.on('error', (error) => (c.error = error));
    socket.once('connect', () => resolve(c));
    socket.once('error', reject);
  });
}

/** Resolves once `state()` holds; checked on every turn of the event loop. */
async function until(state: () => boolean): Promise<void> {
  while (!state()) await new Promise((resolve) => setImmediate(resolve));
}

/** A few turns of the event loop: long enough for bytes on loopback to be seen if they had been sent. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('ApiServerProxy', () => {
  let target: Target;
  let proxy: ApiServerProxy;
  const clients: Client[] = [];
  const open = async () => {
    const c = await client(proxy.port);
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    target = new Target();
    proxy = new ApiServerProxy({ target: { host: '127.0.0.1', port: await target.start() } });
    await proxy.start();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.socket.destroy();
    await proxy.stop();
    await target.stop();
  });

  it('refuses a target that is no port, at construction', () => {
    expect(() => new ApiServerProxy({ target: { host: '127.0.0.1', port: 0 } })).toThrow(/target\.port/);
    expect(() => new ApiServerProxy({ target: { host: '', port: 443 } })).toThrow(/target\.host/);
  });

  it('gives its address as an https URL on the host it listens on', () => {
    expect(proxy.url).toBe(`https://127.0.0.1:${proxy.port}`);
  });

  it('forwards bytes both ways, then the FIN, in order', async () => {
    const c = await open();
    c.socket.write('ping');
    await until(() => target.received[0] === 'ping');
    target.sockets[0].end('pong');
    await until(() => c.ended);
    expect(c.received).toBe('pong');
    c.socket.end();
    await until(() => target.ended[0]);
  });

  it('keeps what clients send while held, FIN included, resolving once something is kept; release sends it on', async () => {
    const c = await open();
    await until(() => target.sockets.length === 1);
    const held = proxy.hold();
    c.socket.write('a');
    c.socket.write('b');
    c.socket.end();
    await held;
    await until(() => proxy.pending === 2 || proxy.pending === 3);
    await settle();
    expect(target.received[0]).toBe('');
    expect(target.ended[0]).toBe(false);
    // The other way is not held.
    target.sockets[0].write('reply');
    await until(() => c.received === 'reply');

    proxy.release();
    await until(() => target.ended[0]);
    expect(target.received[0]).toBe('ab');
  });

  it('resolves a second hold() at once while something is already kept', async () => {
    const c = await open();
    await until(() => target.sockets.length === 1);
    const first = proxy.hold();
    c.socket.write('a');
    await first;
    await proxy.hold();
    expect(target.received[0]).toBe('');
    proxy.release();
    await until(() => target.received[0] === 'a');
  });

  it('freezes both ways with no FIN or RST, and heal sends on what was kept, in order', async () => {
    const c = await open();
    c.socket.write('ping');
    await until(() => target.received[0] === 'ping');
    proxy.freeze();
    target.sockets[0].write('po');
    target.sockets[0].end('ng');
    c.socket.write('more');
    c.socket.end();
    await until(() => proxy.pending >= 4);
    await settle();
    expect({ client: c.received, ended: c.ended, closed: c.closed, error: c.error }).toEqual({
      client: '',
      ended: false,
      closed: false,
      error: undefined,
    });
    expect({ target: target.received[0], ended: target.ended[0] }).toEqual({ target: 'ping', ended: false });

    proxy.heal();
    await until(() => c.ended && target.ended[0]);
    expect(c.received).toBe('pong');
    expect(target.received[0]).toBe('pingmore');
  });

  it('delays what the server sends only, and keeps its order whatever the delay of each chunk', async () => {
    const c = await open();
    await until(() => target.sockets.length === 1);
    proxy.delayMs = 3_600_000;
    target.sockets[0].write('slow');
    await until(() => proxy.pending === 1);
    // Client to server is not delayed, even behind a delayed answer.
    c.socket.write('ping');
    await until(() => target.received[0] === 'ping');
    expect(c.received).toBe('');
    // A chunk with no delay still waits for the one before it.
    proxy.delayMs = 0;
    target.sockets[0].write('fast');
    await until(() => proxy.pending === 2);
    await settle();
    expect(c.received).toBe('');
  });

  it('delivers delayed chunks in order once their delays pass', async () => {
    const c = await open();
    await until(() => target.sockets.length === 1);
    proxy.delayMs = 30;
    target.sockets[0].write('a');
    await until(() => proxy.pending === 1);
    proxy.delayMs = 0;
    target.sockets[0].end('b');
    await until(() => c.ended);
    expect(c.received).toBe('ab');
  });

  it('resets connections and refuses new ones while down, and listens on the same port once up', async () => {
    const c = await open();
    c.socket.write('ping');
    await until(() => target.received[0] === 'ping');
    const port = proxy.port;
    await proxy.down();
    await until(() => c.closed);
    expect(c.error?.code).toBe('ECONNRESET');
    await expect(client(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    await proxy.up();
    expect(proxy.port).toBe(port);
    const again = await open();
    again.socket.write('back');
    await until(() => target.received[1] === 'back');
  });

  it('counts the most connections open at once since resetPeak()', async () => {
    const [a, b, c] = [await open(), await open(), await open()];
    await until(() => proxy.openConnections === 3);
    expect(proxy.peakConnections).toBe(3);
    a.socket.end();
    b.socket.end();
    await until(() => target.ended[0] && target.ended[1]);
    target.sockets[0].end();
    target.sockets[1].end();
    await until(() => proxy.openConnections === 1);
    expect(proxy.peakConnections).toBe(3);
    proxy.resetPeak();
    expect(proxy.peakConnections).toBe(1);
    await open();
    await until(() => proxy.openConnections === 2);
    expect(proxy.peakConnections).toBe(2);
    expect(c.closed).toBe(false);
  });

  it('stops with something held, delayed or frozen, leaving no connection open', async () => {
    const c = await open();
    await until(() => target.sockets.length === 1);
    proxy.delayMs = 3_600_000;
    target.sockets[0].write('late');
    proxy.freeze();
    void proxy.hold();
    c.socket.write('kept');
    await until(() => proxy.pending === 2);
    await proxy.stop();
    await until(() => c.ended && proxy.openConnections === 0);
    expect(c.received).toBe('');
  });
});
