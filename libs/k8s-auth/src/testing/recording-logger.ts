import type { LoggerService } from '@nestjs/common';

/**
 * A Nest logger that keeps every line, so a test can check what a service said, and that it never
 * said a token. Pass it to `createNestApplication({ logger })` or `Logger.overrideLogger`.
 */
export class RecordingLogger implements LoggerService {
  readonly lines: string[] = [];
  log = (message: unknown) => this.record(message);
  error = (message: unknown) => this.record(message);
  warn = (message: unknown) => this.record(message);
  debug = (message: unknown) => this.record(message);
  verbose = (message: unknown) => this.record(message);
  fatal = (message: unknown) => this.record(message);

  /** Everything logged so far, one line each. */
  text(): string {
    return this.lines.join('\n');
  }

  private record(message: unknown): void {
    this.lines.push(message instanceof Error ? (message.stack ?? message.message) : String(message));
  }
}
