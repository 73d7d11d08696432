import { Controller, Get, Param } from '@nestjs/common';
import { get } from 'node:http';
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

  it('answers a request that reaches it while it closes, rather than with 503', async () => {
    const moduleRef = await Test.createTestingModule({ controllers: [ThingsController] }).compile();
    const closing = moduleRef.createNestApplication<NestFastifyApplication>(serviceAdapter(), { logger: false });
    // Holds the close between Fastify's "closing" mark and the listener's close, where a new request can still land.
    let entered: () => void = () => undefined;
    let release: () => void = () => undefined;
    const inWindow = new Promise<void>((resolve) => (entered = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    closing
      .getHttpAdapter()
      .getInstance()
      .addHook('preClose', async () => {
        entered();
        await released;
      });
    await closing.listen(0, '127.0.0.1');
    const { port } = closing.getHttpServer().address() as { port: number };
    const closed = closing.close();
    await inWindow;
    const status = await new Promise<number | undefined>((resolve, reject) =>
      get({ host: '127.0.0.1', port, path: '/things/1', agent: false }, (res) => {
        res.resume().on('end', () => resolve(res.statusCode));
      }).on('error', reject),
    );
    release();
    await closed;
    expect(status).toBe(200);
  });
});
