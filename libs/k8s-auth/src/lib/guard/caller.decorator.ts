import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { CallerIdentity } from '../authn/authentication.types';
import { requestCaller } from './service-account.guard';

/** The identity ServiceAccountGuard established for this request (frozen); undefined on a public route. */
export const Caller = createParamDecorator((_data: unknown, context: ExecutionContext): CallerIdentity | undefined =>
  requestCaller(context.switchToHttp().getRequest<object>()),
);
