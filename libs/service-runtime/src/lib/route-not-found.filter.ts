import { type ArgumentsHost, Catch, NotFoundException } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';

/**
 * Nest answers an unknown route with `Cannot GET /path?query`, echoing the query string: a token
 * sent as `?access_token=…` (RFC 6750 §2.3) to a wrong URL would come back in the body, and land in
 * any log that records answers. This filter drops the query from that message; any other 404 is
 * passed on untouched. It reads the request through the HTTP adapter, so Fastify and Express alike.
 */
@Catch(NotFoundException)
export class RouteNotFoundFilter extends BaseExceptionFilter {
  override catch(exception: NotFoundException, host: ArgumentsHost): void {
    const adapter = this.applicationRef ?? this.httpAdapterHost?.httpAdapter;
    const request: unknown = host.switchToHttp().getRequest();
    const method = adapter?.getRequestMethod?.(request) ?? '';
    const url = adapter?.getRequestUrl?.(request) ?? '';
    const query = url.indexOf('?');
    if (query >= 0 && exception.message === `Cannot ${method} ${url}`) {
      return super.catch(new NotFoundException(`Cannot ${method} ${url.slice(0, query)}`), host);
    }
    return super.catch(exception, host);
  }
}
