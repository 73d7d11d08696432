import { ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { INestApplication } from '@nestjs/common';
import { Transport } from '@nestjs/microservices';
import { createServer } from 'node:net';
import { parseListenAddress } from './listen-address';

/** A gRPC listener beside a service's HTTP one: its proto, shipped beside `main.js`, and its default address. */
export interface GrpcListenerOptions {
  /** The proto package the service's `@GrpcMethod` handlers serve. */
  package: string;
  /** The `.proto` file. */
  protoPath: string;
  /** Used when `GRPC_LISTEN_ADDR` is not set, e.g. `:8082`. */
  defaultListenAddr: string;
}

/**
 * Connects Nest's gRPC transport to `app` at `GRPC_LISTEN_ADDR` (plaintext, as in-cluster traffic often is) and returns
 * the address it will listen on. Not `inheritAppConfig`: the app's global filters are HTTP's; the gRPC controllers name
 * their guard with `@UseGuards`. Port 0 takes a free port first, as Nest's gRPC server does not tell the one it bound.
 */
export async function connectGrpc(app: INestApplication, options: GrpcListenerOptions): Promise<string> {
  const address = parseListenAddress(process.env['GRPC_LISTEN_ADDR'] ?? options.defaultListenAddr, 'GRPC_LISTEN_ADDR');
  const port = address.port === 0 ? await freePort(address.host) : address.port;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  const url = `${host}:${port}`;
  app.connectMicroservice({
    transport: Transport.GRPC,
    options: {
      package: options.package,
      // Loaded here rather than by Nest, so the bundle's package.json names the loader and grpc-js.
      packageDefinition: loadSync(options.protoPath),
      credentials: ServerCredentials.createInsecure(),
      url,
    },
  });
  return url;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
