import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { CALLER_PARAM_KEY } from './k8s-auth.constants';
import { requestCaller } from './request-callers';
import type { CallerIdentity } from './token-reviewer';

const callerParam = createParamDecorator((_data: unknown, context: ExecutionContext): CallerIdentity | undefined =>
  requestCaller(context.switchToHttp().getRequest<object>()),
);

/**
 * The identity ServiceAccountGuard established for this request. The handler is also marked as reading it, so the
 * guard keeps the identity only for routes that ask for it.
 */
export function Caller(): ParameterDecorator {
  return (target, propertyKey, parameterIndex) => {
    callerParam()(target, propertyKey, parameterIndex);
    const handler = propertyKey === undefined ? undefined : (target as Record<string | symbol, unknown>)[propertyKey];
    if (typeof handler === 'function') Reflect.defineMetadata(CALLER_PARAM_KEY, true, handler);
  };
}
