import { Module } from '@nestjs/common';
import { ReportsGrpcController } from './reports.grpc.controller';

// The gRPC side of the reports: its controller, reached once main.ts connects the gRPC transport.
@Module({ controllers: [ReportsGrpcController] })
export class ReportsGrpcModule {}
