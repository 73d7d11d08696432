import {
  type CallCredentials,
  type CallInvocationTransformer,
  credentials,
  InterceptingCall,
  type Interceptor,
  type InterceptorOptions,
  Metadata,
  status,
} from '@grpc/grpc-js';
import type { TokenSource } from './token-source';

export interface GrpcTokenOptions {
  /**
   * The address the client is made with (`host:port`, `dns:///host:port`, …): the token goes only on calls of a
   * channel with that target.
   */
  target: string;
  /** The metadata key that carries the token. @default 'authorization' (`authorization: Bearer <token>`) */
  header?: 'authorization' | 'x-client-id';
}

/** grpc-js client options: `interceptors` and the `callInvocationTransformer` that shows them the channel. */
export interface GrpcTokenClientOptions {
  interceptors: Interceptor[];
  callInvocationTransformer: CallInvocationTransformer;
}

// Where the transformer leaves the call's channel target: grpc-js copies call options into the interceptors' options.
const CHANNEL_TARGET = Symbol('k8sAuthChannelTarget');
type StampedOptions = InterceptorOptions & { [CHANNEL_TARGET]?: string };

/**
 * The options of a grpc-js client (the third argument of its constructor, or `channelOptions` of a Nest
 * `Transport.GRPC` client) that send `source`'s token on plaintext channels, on the calls whose channel target is
 * `options.target` and no other. A call answered UNAUTHENTICATED re-reads the source before its caller gets the
 * status, so that the caller's next attempt carries the new token; the call itself is not sent again, as a client
 * cannot tell whether a gRPC method is idempotent.
 * @throws Error when `options.target` is not a target.
 */
export function serviceAccountClientOptions(source: TokenSource, options: GrpcTokenOptions): GrpcTokenClientOptions {
  return {
    interceptors: [serviceAccountTokenInterceptor(source, options)],
    callInvocationTransformer: (call) => ({
      ...call,
      callOptions: { ...call.callOptions, [CHANNEL_TARGET]: call.channel.getTarget() },
    }),
  };
}

/**
 * The interceptor of {@link serviceAccountClientOptions}, for a client that lists interceptors of its own. grpc-js
 * shows an interceptor no channel: this one reads the channel's target that the client's `callInvocationTransformer`
 * (that of `serviceAccountClientOptions`) puts in the call options, and refuses a call made without it (the caller
 * gets an error) rather than send the token to a target it cannot see. Calls to another target go on without the
 * token.
 */
export function serviceAccountTokenInterceptor(source: TokenSource, options: GrpcTokenOptions): Interceptor {
  const target = normalizedTarget(options?.target);
  const header = options.header ?? 'authorization';
  let refreshing: Promise<void> | undefined;
  // One refresh for all the calls refused at once; a failed one leaves the next token() to report.
  const refresh = () =>
    (refreshing ??= source
      .refresh()
      .catch(() => undefined)
      .finally(() => (refreshing = undefined)));

  return (callOptions: StampedOptions, nextCall) => {
    const channelTarget = callOptions[CHANNEL_TARGET];
    if (channelTarget === undefined) {
      throw new Error(
        'serviceAccountTokenInterceptor sees no channel target: give the client the callInvocationTransformer of ' +
          'serviceAccountClientOptions(source, { target }) too',
      );
    }
    if (normalizedTarget(channelTarget) !== target) return new InterceptingCall(nextCall(callOptions));
    const call: InterceptingCall = new InterceptingCall(nextCall(callOptions), {
      start(metadata, listener, next) {
        let token: string;
        try {
          token = source.token();
        } catch (err) {
          // Started, then cancelled before anything is sent: the caller gets a status, as for any failed call.
          next(metadata, listener);
          call.cancelWithStatus(status.UNAVAILABLE, (err as Error).message);
          return;
        }
        metadata.set(header, header === 'authorization' ? `Bearer ${token}` : token);
        next(metadata, {
          onReceiveStatus(answer, nextStatus) {
            if (answer.code !== status.UNAUTHENTICATED) return nextStatus(answer);
            void refresh().then(() => nextStatus(answer));
          },
        });
      },
    });
    return call;
  };
}

/**
 * Call credentials that send `source`'s token on every call of a TLS channel, for
 * `credentials.combineChannelCredentials(credentials.createSsl(…), serviceAccountCallCredentials(source))`: the token
 * then goes only to the channel's target, proven by its certificate. grpc-js refuses to combine call credentials with
 * `createInsecure()`, but applies call credentials given per call (the `credentials` call option) on any channel:
 * give them to the channel only. A source with no valid token fails the call with UNAVAILABLE.
 */
export function serviceAccountCallCredentials(
  source: TokenSource,
  options: Pick<GrpcTokenOptions, 'header'> = {},
): CallCredentials {
  const header = options.header ?? 'authorization';
  return credentials.createFromMetadataGenerator((_call, callback) => {
    let token: string;
    try {
      token = source.token();
    } catch (err) {
      return callback(err as Error);
    }
    const metadata = new Metadata();
    metadata.set(header, header === 'authorization' ? `Bearer ${token}` : token);
    callback(null, metadata);
  });
}

/** grpc-js names a target without a scheme `dns:<target>`; `dns:///<target>` is the same one. */
function normalizedTarget(target: unknown): string {
  if (typeof target !== 'string' || !target.trim()) {
    throw new Error(`serviceAccountTokenInterceptor: the target option must name the client's address`);
  }
  return target.trim().replace(/^dns:(\/\/\/)?/, '');
}
