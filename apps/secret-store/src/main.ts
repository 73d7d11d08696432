import { runService } from '@k8s-auth/service-runtime';
import { readSecretStoreConfig } from './app/secret-store.config';
import { AppModule } from './app/app.module';

void runService(() => AppModule.register(readSecretStoreConfig()), 'secret-store', ':8081');
