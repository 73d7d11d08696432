import { Agent, createServer, get } from 'node:http';
import { drainable } from './graceful-shutdown';

describe('drainable', () => {
  it('closes keep-alive connections as soon as the requests in flight are answered', async () => {
    const server = createServer((_req, res) => setTimeout(() => res.end('ok'), 300));
    const { drain } = drainable(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const agent = new Agent({ keepAlive: true });
    const started = Date.now();
    const answers = Array.from(
      { length: 3 },
      () =>
        new Promise<string | undefined>((resolve, reject) =>
          get({ host: '127.0.0.1', port, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.headers.connection));
          }).on('error', reject),
        ),
    );
    await new Promise((r) => setTimeout(r, 100));
    drain();
    const closed = new Promise<number>((resolve) => server.close(() => resolve(Date.now() - started)));

    expect(await Promise.all(answers)).toEqual(['close', 'close', 'close']);
    // Without drain() the server would wait for Node's 5 s keep-alive timeout.
    expect(await closed).toBeLessThan(2000);
    agent.destroy();
  });
});
