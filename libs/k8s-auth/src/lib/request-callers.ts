import type { CallerIdentity } from './token-reviewer';

// The identity the guard established for each request, for `@Caller()`. Kept beside the request rather than on it: a
// property added to Node's IncomingMessage changes its hidden class, which slowed every later access to the request
// object (Express's and Node's own) enough to cost the guarded route about 7 % of its requests/s in the benchmark.
const callers = new WeakMap<object, CallerIdentity>();

export function setRequestCaller(request: object, caller: CallerIdentity): void {
  callers.set(request, caller);
}

export function requestCaller(request: object): CallerIdentity | undefined {
  return callers.get(request);
}
