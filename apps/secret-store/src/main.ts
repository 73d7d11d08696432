import { runService } from '@k8s-auth/service-runtime';
import { join } from 'node:path';
import { readSecretStoreConfig } from './app/secret-store.config';
import { AppModule } from './app/app.module';
import { GRPC_PACKAGE } from './app/secret-store.grpc.controller';

void runService(() => AppModule.register(readSecretStoreConfig()), 'secret-store', ':8081', {
  // The proto ships beside main.js (webpack.config.js copies it), and so in the image.
  grpc: {
    package: GRPC_PACKAGE,
    protoPath: join(__dirname, 'proto', 'secret_store.proto'),
    defaultListenAddr: ':8082',
  },
});
