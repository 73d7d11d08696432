import { Module } from '@nestjs/common';
import { ReportsController } from './reports.controller';

// Needs no import of K8sAuthModule: it is global.
@Module({ controllers: [ReportsController] })
export class ReportsModule {}
