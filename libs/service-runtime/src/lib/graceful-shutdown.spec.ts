import { Controller, Get } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { Agent, createServer, get, type Server } from 'node:http';
import { connect } from 'node:net';
import { drainable } from './graceful-shutdown';
import { serviceAdapter } from './service-adapter';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `count` GETs of `/slow` sent at once on keep-alive connections: each resolves to its status, body and `Connection`. */
function inFlight(port: number, agent: Agent, count: number) {
  return Array.from(
    { length: count },
    () =>
      new Promise<{ status?: number; body: string; connection?: string }>((resolve, reject) =>
        get({ host: '127.0.0.1', port, path: '/slow', agent }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode, body, connection: res.headers.connection }));
        }).on('error', reject),
      ),
  );
}

/** Resolves with the connection's error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

const portOf = (server: Server) => (server.address() as { port: number }).port;

describe('drainable', () => {
  it('closes keep-alive connections as soon as the requests in flight are answered', async () => {
    const server = createServer((_req, res) => setTimeout(() => res.end('ok'), 300));
    // Idle connections kept far longer than the test may run: only drain() lets the close finish in time.
    server.keepAliveTimeout = 10 * 60_000;
    const { drain } = drainable(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const agent = new Agent({ keepAlive: true });
    const started = Date.now();
    const answers = inFlight(portOf(server), agent, 3);
    await sleep(100);
    drain();
    const closed = new Promise<number>((resolve) => server.close(() => resolve(Date.now() - started)));

    expect((await Promise.all(answers)).map((a) => a.connection)).toEqual(['close', 'close', 'close']);
    // Closed at all before the test's timeout is the verdict; the time is information.
    console.log(`drained and closed in ${await closed} ms`);
    agent.destroy();
  }, 30_000);

  describe('on the services’ Fastify server, as runService closes it (drain, then Nest’s close)', () => {
    @Controller()
    class SlowController {
      @Get('slow')
      async slow(): Promise<string> {
        await sleep(300);
        return 'ok';
      }
    }

    let app: NestFastifyApplication;
    let agent: Agent;
    beforeEach(async () => {
      const moduleRef = await Test.createTestingModule({ controllers: [SlowController] }).compile();
      app = moduleRef.createNestApplication<NestFastifyApplication>(serviceAdapter(), { logger: false });
      agent = new Agent({ keepAlive: true });
    });
    afterEach(async () => {
      agent.destroy();
      await app.close().catch(() => undefined);
    });

    it('answers the requests in flight, refuses new connections, and closes once they are answered', async () => {
      const { drain } = drainable(app.getHttpServer());
      await app.listen(0, '127.0.0.1');
      const port = portOf(app.getHttpServer());
      const started = Date.now();
      const answers = inFlight(port, agent, 3);
      await sleep(100);
      drain();
      const closed = app.close().then(() => Date.now() - started);
      while (app.getHttpServer().listening) await sleep(5);

      expect(await tryConnect(port)).toBe('ECONNREFUSED');
      expect(await Promise.all(answers)).toEqual(Array(3).fill({ status: 200, body: 'ok', connection: 'close' }));
      // Fastify keeps idle connections 72 s: closed at all before the test's timeout is the verdict.
      console.log(`drained and closed in ${await closed} ms`);
    }, 30_000);

    it('without drain() the close waits for the connections of those answers (Fastify keeps them 72 s)', async () => {
      await app.listen(0, '127.0.0.1');
      const answers = inFlight(portOf(app.getHttpServer()), agent, 1);
      await sleep(100);
      let closed = false;
      void app.close().then(() => (closed = true));

      expect((await Promise.all(answers))[0]).toMatchObject({ status: 200, connection: 'keep-alive' });
      await sleep(1000);
      expect(closed).toBe(false);
    });
  });
});
