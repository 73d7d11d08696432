import { type ExecutionContext, HttpException, HttpStatus } from '@nestjs/common';
import type { Metadata } from '@grpc/grpc-js';
import type { RpcException } from '@nestjs/microservices';
import { TOKEN_HEADERS } from './bearer-token';
import type { GuardedCall, GuardedRequest } from './guarded-call';

/**
 * gRPC status codes (grpc/doc/statuscodes.md), by the HTTP status of the guard's refusals: the meaning of each
 * answer stays, only its spelling changes. Written out rather than read from `@grpc/grpc-js`, which an HTTP-only app
 * need not install; grpc-call.spec.ts holds them to grpc-js's `status`.
 */
export const GRPC_STATUS_OF_HTTP: Readonly<Record<number, number>> = {
  [HttpStatus.BAD_REQUEST]: 3, // INVALID_ARGUMENT
  [HttpStatus.UNAUTHORIZED]: 16, // UNAUTHENTICATED
  [HttpStatus.FORBIDDEN]: 7, // PERMISSION_DENIED
  [HttpStatus.NOT_FOUND]: 5, // NOT_FOUND
  [HttpStatus.TOO_MANY_REQUESTS]: 8, // RESOURCE_EXHAUSTED
  [HttpStatus.INTERNAL_SERVER_ERROR]: 13, // INTERNAL
  [HttpStatus.NOT_IMPLEMENTED]: 12, // UNIMPLEMENTED
  [HttpStatus.SERVICE_UNAVAILABLE]: 14, // UNAVAILABLE
  [HttpStatus.GATEWAY_TIMEOUT]: 4, // DEADLINE_EXCEEDED
};
const UNKNOWN = 2;

/** The gRPC status for an HTTP status: UNKNOWN for those the table does not name. */
export function grpcStatusOf(httpStatus: number): number {
  return GRPC_STATUS_OF_HTTP[httpStatus] ?? UNKNOWN;
}

/** What Nest's gRPC server hands a handler last: grpc-js's call, whose `request` is the message of a unary call. */
interface ServerCall {
  metadata: Metadata;
  request?: unknown;
}

/**
 * grpc-js's call of this context, or undefined for another transport. Nest calls gRPC handlers with
 * `(message, metadata, call)`, or `(call[, callback])` for `@GrpcStreamCall`; Kafka, NATS and the others with
 * `(data, context)`, whose data is plain decoded values.
 */
export function grpcServerCall(context: ExecutionContext): ServerCall | undefined {
  const candidate = (context.getArgs().length >= 3 ? context.getArgByIndex(2) : context.getArgByIndex(0)) as
    | Partial<ServerCall>
    | undefined;
  const metadata = candidate?.metadata;
  if (typeof metadata !== 'object' || metadata === null) return undefined;
  return typeof metadata.get === 'function' && typeof metadata.clone === 'function'
    ? (candidate as ServerCall)
    : undefined;
}

/** The trailers of the refusal about to be thrown on a call. */
const trailers = new WeakMap<ServerCall, [string, string][]>();

/**
 * gRPC: the token from the call's metadata, with the rules of HTTP headers (one value, one header); `@RequireAccess`
 * placeholders from the top-level fields of the request message (a unary or server-streaming call's); refusals as
 * `RpcException({ code, message, metadata })`, which Nest's gRPC server answers as that status, with `metadata` as
 * trailers (`retry-after`, `www-authenticate`).
 */
export const grpcCall: GuardedCall = {
  placeholder: 'request field',
  request(context: ExecutionContext): GuardedRequest {
    const call = grpcServerCall(context) as ServerCall;
    const headers: GuardedRequest['headers'] = {};
    for (const name of TOKEN_HEADERS) {
      const values = call.metadata.get(name);
      if (values.length > 0) headers[name] = values.length === 1 ? String(values[0]) : values.map(String);
    }
    // Only a unary or server-streaming call has one request message.
    const message = call.request;
    return {
      headers,
      params: typeof message === 'object' && message !== null ? (message as Record<string, unknown>) : undefined,
    };
  },
  carrier: (context: ExecutionContext) => grpcServerCall(context) as ServerCall,
  setHeader(context: ExecutionContext, name: string, value: string): void {
    const call = grpcServerCall(context) as ServerCall;
    const pending = trailers.get(call);
    if (pending) pending.push([name.toLowerCase(), value]);
    else trailers.set(call, [[name.toLowerCase(), value]]);
  },
  refusal(context: ExecutionContext, thrown: unknown): unknown {
    if (!(thrown instanceof HttpException)) return thrown;
    const call = grpcServerCall(context) as ServerCall;
    // A Metadata of the grpc-js copy the server runs, which is the one it accepts as trailers.
    const metadata = new (call.metadata.constructor as new () => Metadata)();
    for (const [name, value] of trailers.get(call) ?? []) metadata.set(name, value);
    trailers.delete(call);
    return new (rpcException())({ code: grpcStatusOf(thrown.getStatus()), message: messageOf(thrown), metadata });
  },
};

/** The message Nest's HTTP answer would carry: the body's `message` if it is a string, else the exception's. */
function messageOf(exception: HttpException): string {
  const body = exception.getResponse();
  const message = typeof body === 'object' && body !== null ? (body as { message?: unknown }).message : body;
  return typeof message === 'string' ? message : exception.message;
}

let rpcExceptionClass: typeof RpcException | undefined;

/** Loaded on the first gRPC refusal: an app that serves only HTTP need not install `@nestjs/microservices`. */
function rpcException(): typeof RpcException {
  rpcExceptionClass ??= (require('@nestjs/microservices') as typeof import('@nestjs/microservices')).RpcException;
  return rpcExceptionClass;
}
