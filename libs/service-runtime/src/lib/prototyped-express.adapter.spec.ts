import { Controller, Get, Module, Query, Req, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { Application, Request } from 'express';
import { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { type ExpressPrototypes, PrototypedExpressAdapter } from './prototyped-express.adapter';

@Controller()
class EchoController {
  @Get('echo')
  echo(@Query('q') q: string, @Req() req: Request): object {
    // Express's own request methods and properties, read through the prototype.
    return { q, host: req.get('host'), path: req.path, ip: typeof req.ip };
  }
}

@Module({ controllers: [EchoController] })
class EchoModule {}

interface Seen {
  requestPrototype: object;
  responsePrototype: object;
}

async function start(
  adapter: ExpressAdapter,
  options = {},
): Promise<{ app: INestApplication; port: number; seen: Seen[] }> {
  const app = await NestFactory.create(EchoModule, adapter, { logger: false, ...options });
  const seen: Seen[] = [];
  // Before Express's handler: the prototypes the server created the objects with.
  app.getHttpServer().prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    seen.push({ requestPrototype: Object.getPrototypeOf(req), responsePrototype: Object.getPrototypeOf(res) });
  });
  await app.listen(0, '127.0.0.1');
  return { app, port: (app.getHttpServer().address() as { port: number }).port, seen };
}

describe('PrototypedExpressAdapter', () => {
  let app: INestApplication | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it("creates requests and responses with Express's prototypes, so Express does not change them per request", async () => {
    const adapter = new PrototypedExpressAdapter();
    const started = await start(adapter);
    app = started.app;
    const express = adapter.getInstance<Application & ExpressPrototypes>();

    const answer = await request(app.getHttpServer()).get('/echo?q=hello');

    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      q: 'hello',
      host: `127.0.0.1:${started.port}`,
      path: '/echo',
      ip: 'string',
    });
    expect(answer.headers['x-powered-by']).toBe('Express');
    expect(started.seen).toEqual([{ requestPrototype: express.request, responsePrototype: express.response }]);
    expect((await request(app.getHttpServer()).get('/missing')).status).toBe(404);
  });

  it("is what Nest's own adapter does not do (the objects start as Node's)", async () => {
    const started = await start(new ExpressAdapter());
    app = started.app;

    expect((await request(app.getHttpServer()).get('/echo?q=hello')).status).toBe(200);
    expect(started.seen).toEqual([
      { requestPrototype: IncomingMessage.prototype, responsePrototype: ServerResponse.prototype },
    ]);
  });

  it("leaves forceCloseConnections to Nest's own server", async () => {
    const started = await start(new PrototypedExpressAdapter(), { forceCloseConnections: true });
    app = started.app;

    expect((await request(app.getHttpServer()).get('/echo?q=x')).status).toBe(200);
    expect(started.seen[0].requestPrototype).toBe(IncomingMessage.prototype);
  });
});
