import type { ExecutionContext } from '@nestjs/common';
import type { GuardedCall, GuardedRequest } from './guarded-call';

interface HttpResponse {
  /** Express, and Node's own response. */
  setHeader?(name: string, value: string): void;
  /** Fastify's reply. */
  header?(name: string, value: string): void;
}

/** Express and Fastify: the request's headers and route parameters; refusals are Nest's HTTP exceptions as thrown. */
export const httpCall: GuardedCall = {
  placeholder: 'route parameter',
  request: (context: ExecutionContext) => context.switchToHttp().getRequest<GuardedRequest>(),
  carrier: (context: ExecutionContext) => context.switchToHttp().getRequest<object>(),
  setHeader(context: ExecutionContext, name: string, value: string): void {
    const response = context.switchToHttp().getResponse<HttpResponse>();
    if (typeof response.setHeader === 'function') response.setHeader(name, value);
    else response.header?.(name, value);
  },
  refusal: (_context: ExecutionContext, thrown: unknown) => thrown,
};
