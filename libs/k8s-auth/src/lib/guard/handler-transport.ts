import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export type Handler = Function;

/** How a controller's method is reached, as its decorators declare it; undefined for a method that is no handler. */
export type HandlerTransport =
  | { readonly kind: 'http'; readonly method: string }
  /** `@GrpcMethod` (unary or server-streaming: one request message), `@GrpcStreamMethod` or `@GrpcStreamCall`. */
  | { readonly kind: 'grpc'; readonly service: string; readonly rpc: string; readonly requestStream: boolean }
  /** `@MessagePattern`/`@EventPattern` of another transport, or of any (no transport named). */
  | { readonly kind: 'other'; readonly describe: string };

/** The metadata keys and enums of `@nestjs/microservices`, read from the package as installed. */
interface MicroserviceMetadata {
  readonly PATTERN_METADATA: string;
  readonly PATTERN_HANDLER_METADATA: string;
  readonly TRANSPORT_METADATA: string;
  readonly transports: Readonly<Record<number, string>>;
  readonly grpc: number;
  readonly event: number;
  readonly noStreaming: string;
}

let microservices: MicroserviceMetadata | null | undefined;

/**
 * Loaded on the first look at a handler that is no HTTP route, so an HTTP-only app need not install
 * `@nestjs/microservices`; without it no handler can carry its decorators (null).
 */
function microserviceMetadata(): MicroserviceMetadata | null {
  if (microservices !== undefined) return microservices;
  try {
    const constants = require('@nestjs/microservices/constants') as typeof import('@nestjs/microservices/constants');
    const { Transport } =
      require('@nestjs/microservices/enums/transport.enum') as typeof import('@nestjs/microservices/enums/transport.enum');
    const { PatternHandler } =
      require('@nestjs/microservices/enums/pattern-handler.enum') as typeof import('@nestjs/microservices/enums/pattern-handler.enum');
    const { GrpcMethodStreamingType } =
      require('@nestjs/microservices/decorators/message-pattern.decorator') as typeof import('@nestjs/microservices/decorators/message-pattern.decorator');
    microservices = {
      PATTERN_METADATA: constants.PATTERN_METADATA,
      PATTERN_HANDLER_METADATA: constants.PATTERN_HANDLER_METADATA,
      TRANSPORT_METADATA: constants.TRANSPORT_METADATA,
      transports: Transport,
      grpc: Transport.GRPC,
      event: PatternHandler.EVENT,
      noStreaming: GrpcMethodStreamingType.NO_STREAMING,
    };
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw err;
    microservices = null;
  }
  return microservices;
}

/** How `handler` is reached: an HTTP route, a gRPC method, a handler of another transport, or none of these. */
export function handlerTransport(handler: Handler): HandlerTransport | undefined {
  if (Reflect.getMetadata(PATH_METADATA, handler) !== undefined) {
    return { kind: 'http', method: RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as number] ?? 'GET' };
  }
  if (Reflect.getMetadataKeys(handler).length === 0) return undefined;
  const keys = microserviceMetadata();
  const patterns = keys && (Reflect.getMetadata(keys.PATTERN_METADATA, handler) as unknown[] | undefined);
  if (!keys || !patterns) return undefined;
  const transport = Reflect.getMetadata(keys.TRANSPORT_METADATA, handler) as number | symbol | undefined;
  if (transport === keys.grpc) {
    const pattern = (patterns[0] ?? {}) as { service?: string; rpc?: string; streaming?: string };
    return {
      kind: 'grpc',
      service: String(pattern.service),
      rpc: String(pattern.rpc),
      requestStream: pattern.streaming !== keys.noStreaming,
    };
  }
  const decorator =
    Reflect.getMetadata(keys.PATTERN_HANDLER_METADATA, handler) === keys.event ? '@EventPattern' : '@MessagePattern';
  const on =
    transport === undefined
      ? 'any transport'
      : typeof transport === 'number'
        ? (keys.transports[transport] ?? String(transport))
        : String(transport);
  return { kind: 'other', describe: `${decorator}(${patterns.map((p) => JSON.stringify(p)).join(', ')}) on ${on}` };
}

/**
 * `Controller.handler`, for messages. A decorator may put an anonymous function in the method's place
 * (`@GrpcStreamMethod` does): then the name is that of the property holding it.
 */
export function handlerWhere(controller: { name: string; prototype?: object }, handler: Handler): string {
  if (handler.name) return `${controller.name}.${handler.name}`;
  for (let proto = controller.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    const key = Object.getOwnPropertyNames(proto).find(
      (name) => Object.getOwnPropertyDescriptor(proto, name)?.value === handler,
    );
    if (key) return `${controller.name}.${key}`;
  }
  return `${controller.name}.(anonymous)`;
}
