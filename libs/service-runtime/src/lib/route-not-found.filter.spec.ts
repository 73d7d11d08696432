import { Controller, Get, type INestApplication, NotFoundException } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RouteNotFoundFilter } from './route-not-found.filter';
import { serviceAdapter } from './service-adapter';

@Controller()
class ThingsController {
  @Get('things/:id')
  thing() {
    throw new NotFoundException('no such thing');
  }
}

const ADAPTERS = [
  ['Fastify (the services’ adapter)', true],
  ['Express', false],
] as const;

describe.each(ADAPTERS)('RouteNotFoundFilter on %s', (_name, fastify) => {
  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ controllers: [ThingsController] }).compile();
    app = fastify
      ? moduleRef.createNestApplication<NestFastifyApplication>(serviceAdapter(), { logger: false })
      : moduleRef.createNestApplication({ logger: false });
    app.useGlobalFilters(new RouteNotFoundFilter(app.getHttpAdapter()));
    await app.init();
    if (fastify) await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  });
  afterAll(() => app?.close());

  it('answers an unknown route without echoing its query string', async () => {
    const res = await request(app.getHttpServer()).get('/nowhere?access_token=a.b.c&x=1').expect(404);
    expect(res.body).toEqual({ statusCode: 404, message: 'Cannot GET /nowhere', error: 'Not Found' });
  });

  it('leaves an unknown route without a query, and 404s of handlers, as they are', async () => {
    const unknown = await request(app.getHttpServer()).get('/nowhere').expect(404);
    expect(unknown.body.message).toBe('Cannot GET /nowhere');
    const handler = await request(app.getHttpServer()).get('/things/1?x=1').expect(404);
    expect(handler.body.message).toBe('no such thing');
  });
});
