/**
 * gRPC entry point (`@k8s-auth/nestjs/grpc`): outgoing tokens for grpc-js clients. Apart from the main entry point,
 * so that HTTP-only apps load and type-check `@k8s-auth/nestjs` without @grpc/grpc-js, an optional peer dependency.
 */
export {
  serviceAccountCallCredentials,
  serviceAccountClientOptions,
  serviceAccountTokenInterceptor,
} from './lib/outgoing/outgoing-token.grpc';
export type { GrpcTokenClientOptions, GrpcTokenOptions } from './lib/outgoing/outgoing-token.grpc';
