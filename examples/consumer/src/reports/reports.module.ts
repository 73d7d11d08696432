import { Module } from '@nestjs/common';
import { ReportsController } from './reports.controller';
import { ReportsGrpcController } from './reports.grpc.controller';

// Needs no import of K8sAuthModule: it is global.
@Module({ controllers: [ReportsController, ReportsGrpcController] })
export class ReportsModule {}
