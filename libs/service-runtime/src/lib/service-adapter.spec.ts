import { Controller, Get, Param } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { serviceAdapter } from './service-adapter';

@Controller()
class ThingsController {
  @Get('things/:id')
  thing(@Param('id') id: string) {
    return { id };
  }
}

describe('serviceAdapter', () => {
  let app: NestFastifyApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ controllers: [ThingsController] }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(serviceAdapter(), { logger: false });
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  });
  afterAll(() => app?.close());

  it('routes a parameter as long as a Kubernetes name (253 characters), decoded', async () => {
    const name = 'a'.repeat(253);
    expect((await request(app.getHttpServer()).get(`/things/${name}`).expect(200)).body).toEqual({ id: name });
    expect((await request(app.getHttpServer()).get('/things/..%2Fetc').expect(200)).body).toEqual({ id: '../etc' });
  });

  it.each([
    ['a malformed escape', '/things/%zz', 400, 'malformed URL', 'Bad Request'],
    ['a longer parameter', `/things/${'a'.repeat(254)}`, 414, 'route parameter too long', 'URI Too Long'],
  ])('refuses %s without quoting the URL or its query string', async (_what, path, status, message, error) => {
    const res = await request(app.getHttpServer()).get(`${path}?access_token=a.b.c`).expect(status);
    expect(res.body).toEqual({ message, error, statusCode: status });
  });
});
