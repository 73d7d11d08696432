import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { requestCaller } from './request-callers';
import type { CallerIdentity } from './token-reviewer';

/** The identity ServiceAccountGuard established for this request. */
export const Caller = createParamDecorator((_data: unknown, context: ExecutionContext): CallerIdentity | undefined =>
  requestCaller(context.switchToHttp().getRequest<object>()),
);
