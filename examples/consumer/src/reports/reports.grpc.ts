import { type GrpcOptions, Transport } from '@nestjs/microservices';
import { join } from 'node:path';

// Nest's gRPC transport for ReportsGrpcController: main.ts connects it to the HTTP app (a hybrid app).
export const reportsGrpc = (url: string): GrpcOptions => ({
  transport: Transport.GRPC,
  options: { package: 'reports', protoPath: join(__dirname, 'reports.proto'), url },
});
