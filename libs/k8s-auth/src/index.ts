export * from './lib/k8s-auth.module';
