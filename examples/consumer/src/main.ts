import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { reportsGrpc } from './reports/reports.grpc';

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule);
  // The same app serves gRPC too (a hybrid app): see src/reports/reports.grpc.controller.ts.
  app.connectMicroservice(reportsGrpc(process.env.GRPC_URL ?? '0.0.0.0:5000'));
  await app.startAllMicroservices();
  await app.listen(process.env.PORT ?? 3000);
}

void bootstrap();
