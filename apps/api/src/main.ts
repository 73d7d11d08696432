import { runService } from '@k8s-auth/service-runtime';
import { readApiConfig } from './app/api.config';
import { AppModule } from './app/app.module';

void runService(() => AppModule.register(readApiConfig()), 'api', ':8080');
