import type { ExecutionContext } from '@nestjs/common';
import type { RequestHeaders } from './bearer-token';
import { grpcCall, grpcServerCall } from './grpc-call';
import { httpCall } from './http-call';

/** The request as the guard reads it: Express's and Fastify's both fit, and a gRPC call's view (see grpc-call.ts). */
export interface GuardedRequest {
  headers: Record<string, string | string[] | undefined>;
  headersDistinct?: Record<string, string[] | undefined>;
  rawHeaders?: readonly string[];
  /** What `@RequireAccess` placeholders read: the route's parameters, or a gRPC request message's fields. */
  params?: Record<string, unknown>;
  /** Fastify's request wraps Node's, which alone still has every header as sent. */
  raw?: RequestHeaders;
}

/**
 * What the guard needs of one transport: where the token and the placeholders' values are read, where the caller is
 * kept for `@Caller()`, and how a refusal leaves (an HTTP answer, a gRPC status). The checks themselves are the same.
 */
export interface GuardedCall {
  /** What `@RequireAccess` placeholders name, for messages: `route parameter` or `request field`. */
  readonly placeholder: 'route parameter' | 'request field';
  /** The request as the guard reads it. */
  request(context: ExecutionContext): GuardedRequest;
  /** One object per call, which `@Caller()` finds the caller by. */
  carrier(context: ExecutionContext): object;
  /** A header (HTTP) or trailer (gRPC) of the refusal about to be thrown: `WWW-Authenticate`, `Retry-After`. */
  setHeader(context: ExecutionContext, name: string, value: string): void;
  /** What leaves the guard for `thrown`: the transport's form of a refusal, anything else as it is. */
  refusal(context: ExecutionContext, thrown: unknown): unknown;
}

/** The transport of `context` as the guard serves it; undefined for those it does not (Kafka, NATS, WebSockets, …). */
export function guardedCallOf(context: ExecutionContext): GuardedCall | undefined {
  const type = context.getType();
  if (type === 'http') return httpCall;
  return type === 'rpc' && grpcServerCall(context) ? grpcCall : undefined;
}
