import { type DynamicModule, type INestApplication, Logger, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { drainable } from './graceful-shutdown';
import { parseListenAddress } from './listen-address';
import { PrototypedExpressAdapter } from './prototyped-express.adapter';
import { RouteNotFoundFilter } from './route-not-found.filter';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** The levels at and above `LOG_LEVEL` (default `log`). */
export function logLevels(value = process.env['LOG_LEVEL'] ?? 'log'): LogLevel[] {
  const index = LEVELS.indexOf(value as LogLevel);
  if (index < 0) throw new Error(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, not '${value}'`);
  return LEVELS.slice(0, index + 1);
}

/**
 * Starts a service (the module is built inside, so a bad setting is reported, not thrown): Nest app on `LISTEN_ADDR`, graceful shutdown on SIGTERM/SIGINT (in-flight
 * requests finish, new connections are refused, keep-alive connections are closed as soon as their
 * answer is sent). Unknown routes are answered without echoing the query string. Logs
 * `listening on http://host:port`, which scripts and tests read to find a service started on port 0.
 */
export async function runService(
  module: () => DynamicModule,
  name: string,
  defaultListenAddr: string,
): Promise<INestApplication> {
  const logger = new Logger(name);
  try {
    const address = parseListenAddress(process.env['LISTEN_ADDR'] ?? defaultListenAddr);
    const app = await NestFactory.create(module(), new PrototypedExpressAdapter(), { logger: logLevels() });
    app.useGlobalFilters(new RouteNotFoundFilter(app.getHttpAdapter()));
    app.enableShutdownHooks();
    // Nest's own listeners (above) close the app; these only make the close prompt. `once`: Nest
    // sends the signal again when done, which must then end the process.
    const { drain } = drainable(app.getHttpServer());
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, drain);
    await app.listen(address.port, address.host);
    const bound = app.getHttpServer().address() as { address: string; port: number };
    logger.log(`listening on http://${address.host}:${bound.port}`);
    return app;
  } catch (err) {
    logger.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
