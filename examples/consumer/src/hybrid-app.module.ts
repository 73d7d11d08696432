import { Module } from '@nestjs/common';
import { AppModule } from './app.module';
import { ReportsGrpcModule } from './reports/reports-grpc.module';

// The app of main.ts: AppModule's HTTP routes and the gRPC controller, served by one process (a hybrid app).
@Module({ imports: [AppModule, ReportsGrpcModule] })
export class HybridAppModule {}
