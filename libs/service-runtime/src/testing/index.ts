/**
 * Testing entry point (`@k8s-auth/service-runtime/testing`): starts the built services as processes, for end-to-end
 * tests, benchmarks and scripts. Not imported by the services themselves.
 */
export { startBuiltService } from './built-service';
export type { BuiltApp, BuiltService, BuiltServiceOptions } from './built-service';
export { SecretStoreGrpcClient, SECRET_STORE_PROTO } from './secret-store-grpc';
export type { GrpcAnswer, SecretStoreMethod } from './secret-store-grpc';
