import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { HybridAppModule } from './hybrid-app.module';
import { reportsGrpc } from './reports/reports.grpc';

// main.ts with gRPC beside HTTP in one process: see src/reports/reports.grpc.controller.ts.
async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(HybridAppModule);
  app.connectMicroservice(reportsGrpc(process.env.GRPC_URL ?? '0.0.0.0:5000'));
  await app.startAllMicroservices();
  await app.listen(process.env.PORT ?? 3000);
}

void bootstrap();
