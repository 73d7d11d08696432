import { type DynamicModule, type INestApplication, Logger, type LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { parseListenAddress } from './listen-address';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

/** The levels at and above `LOG_LEVEL` (default `log`). */
export function logLevels(value = process.env['LOG_LEVEL'] ?? 'log'): LogLevel[] {
  const index = LEVELS.indexOf(value as LogLevel);
  if (index < 0) throw new Error(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, not '${value}'`);
  return LEVELS.slice(0, index + 1);
}

/**
 * Starts a service (the module is built inside, so a bad setting is reported, not thrown): Nest app on `LISTEN_ADDR`, graceful shutdown on SIGTERM/SIGINT (in-flight
 * requests finish, new connections are refused). Logs `listening on http://host:port`, which
 * scripts and tests read to find a service started on port 0.
 */
export async function runService(
  module: () => DynamicModule,
  name: string,
  defaultListenAddr: string,
): Promise<INestApplication> {
  const logger = new Logger(name);
  try {
    const address = parseListenAddress(process.env['LISTEN_ADDR'] ?? defaultListenAddr);
    const app = await NestFactory.create(module(), { logger: logLevels() });
    app.enableShutdownHooks();
    await app.listen(address.port, address.host);
    const bound = app.getHttpServer().address() as { address: string; port: number };
    logger.log(`listening on http://${address.host}:${bound.port}`);
    return app;
  } catch (err) {
    logger.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
