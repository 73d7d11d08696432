import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { CALLER_KEY } from './k8s-auth.constants';
import type { CallerIdentity } from './token-reviewer';

/** The identity ServiceAccountGuard established for this request. */
export const Caller = createParamDecorator(
  (_data: unknown, context: ExecutionContext): CallerIdentity | undefined =>
    context.switchToHttp().getRequest<Record<symbol, CallerIdentity | undefined>>()[CALLER_KEY],
);
