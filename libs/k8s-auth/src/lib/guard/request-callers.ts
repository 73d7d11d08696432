import type { CallerIdentity } from '../authn/authentication.types';

// The identity the guard established for each request, for `@Caller()`: kept beside the request, so that the guard
// adds nothing to Express's or Fastify's request objects.
const callers = new WeakMap<object, CallerIdentity>();

export function setRequestCaller(request: object, caller: CallerIdentity): void {
  callers.set(request, caller);
}

export function requestCaller(request: object): CallerIdentity | undefined {
  return callers.get(request);
}
