import { ConsoleLogger, type DynamicModule, Logger, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { AddressInfo } from 'node:net';
import { drainable } from './graceful-shutdown';
import { connectGrpc, type GrpcListenerOptions } from './grpc-listener';
import { parseListenAddress } from './listen-address';
import { RouteNotFoundFilter } from './route-not-found.filter';
import { serviceAdapter } from './service-adapter';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** The levels at and above `LOG_LEVEL` (default `log`). */
export function logLevels(value = process.env['LOG_LEVEL'] ?? 'log'): LogLevel[] {
  const index = LEVELS.indexOf(value as LogLevel);
  if (index < 0) throw new Error(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, not '${value}'`);
  return LEVELS.slice(0, index + 1);
}

/**
 * Starts a service (the module is built inside, so a bad setting is reported, not thrown): a Nest app on Fastify
 * ({@link serviceAdapter}) at `LISTEN_ADDR`, graceful shutdown on SIGTERM/SIGINT (in-flight requests finish, new
 * connections are refused, keep-alive connections are closed as soon as their answer is sent). Unknown routes are
 * answered without echoing the query string. Logs `listening on http://host:port` at every `LOG_LEVEL`: scripts and
 * tests read it to find a service started on port 0. With `grpc`, also serves gRPC at `GRPC_LISTEN_ADDR`, logged
 * before as `grpc listening on host:port`.
 */
export async function runService(
  module: () => DynamicModule,
  name: string,
  defaultListenAddr: string,
  { grpc }: { grpc?: GrpcListenerOptions } = {},
): Promise<NestFastifyApplication> {
  const logger = new Logger(name);
  try {
    const address = parseListenAddress(process.env['LISTEN_ADDR'] ?? defaultListenAddr);
    const app = await NestFactory.create<NestFastifyApplication>(module(), serviceAdapter(), {
      logger: logLevels(),
    });
    app.useGlobalFilters(new RouteNotFoundFilter(app.getHttpAdapter()));
    app.enableShutdownHooks();
    // Nest's own listeners (above) close the app; these only make the close prompt. `once`: Nest
    // sends the signal again when done, which must then end the process.
    const { drain } = drainable(app.getHttpServer());
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, drain);
    const announce = new ConsoleLogger(name, { logLevels: ['log'] });
    if (grpc) {
      const target = await connectGrpc(app, grpc);
      // Start-up checks (the guard's) run before the gRPC port opens.
      await app.init();
      await app.startAllMicroservices();
      announce.log(`grpc listening on ${target}`);
    }
    await app.listen(address.port, address.host);
    const { port } = app.getHttpServer().address() as AddressInfo;
    const host = address.host.includes(':') ? `[${address.host}]` : address.host;
    announce.log(`listening on http://${host}:${port}`);
    return app;
  } catch (err) {
    logger.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
