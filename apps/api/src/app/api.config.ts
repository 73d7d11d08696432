import { TOKEN_HEADERS, type TokenHeader, type TokenSourceOptions } from '@k8s-auth/nestjs';

export interface ApiConfig {
  /** Where the secret store answers. */
  secretStoreUrl: string;
  /** How the store is called (`SECRET_STORE_TRANSPORT`): HTTP at `secretStoreUrl`, or gRPC at `secretStoreGrpcTarget`. */
  secretStoreTransport: 'http' | 'grpc';
  /** The store's gRPC listener, `host:port` (`SECRET_STORE_GRPC_TARGET`). */
  secretStoreGrpcTarget: string;
  /** This service's own token for the secret store: a projected file, or TokenRequest outside a cluster. */
  secretStoreToken: TokenSourceOptions;
  /** How the token is sent: `Authorization: Bearer` or the seed's `X-Client-Id`. */
  tokenHeader: TokenHeader;
  /** How long a call to the secret store may take. */
  secretStoreTimeoutMs: number;
  /** The audience this service's own guarded routes accept. */
  audience: string;
}

/** Reads the environment; a bad value stops start-up with a message that names the variable. */
export function readApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const tokenHeader = env['TOKEN_HEADER'] ?? 'authorization';
  if (!isTokenHeader(tokenHeader)) {
    throw new Error(`TOKEN_HEADER must be ${TOKEN_HEADERS.map((h) => `'${h}'`).join(' or ')}, not '${tokenHeader}'`);
  }
  const timeout = Number(env['SECRET_STORE_TIMEOUT_MS'] ?? 5000);
  if (!Number.isInteger(timeout) || timeout <= 0) {
    throw new Error(`SECRET_STORE_TIMEOUT_MS must be a positive whole number of milliseconds`);
  }
  // How often the token file is read again besides at 80 % of the token's life (the library's default: 5 min).
  const refresh = env['TOKEN_REFRESH_INTERVAL_MS'];
  const refreshIntervalMs = refresh === undefined ? undefined : Number(refresh);
  if (refreshIntervalMs !== undefined && (!Number.isInteger(refreshIntervalMs) || refreshIntervalMs <= 0)) {
    throw new Error(`TOKEN_REFRESH_INTERVAL_MS must be a positive whole number of milliseconds`);
  }
  const serviceAccount = env['TOKEN_SERVICE_ACCOUNT'];
  const transport = env['SECRET_STORE_TRANSPORT'] ?? 'http';
  if (transport !== 'http' && transport !== 'grpc') {
    throw new Error(`SECRET_STORE_TRANSPORT must be 'http' or 'grpc', not '${transport}'`);
  }
  return {
    secretStoreUrl: env['SECRET_STORE_URL'] ?? 'http://app.secret-store.svc.cluster.local',
    secretStoreTransport: transport,
    secretStoreGrpcTarget: env['SECRET_STORE_GRPC_TARGET'] ?? 'app.secret-store.svc.cluster.local:8082',
    secretStoreToken: serviceAccount
      ? { serviceAccount, audience: env['SECRET_STORE_AUDIENCE'] ?? 'secret-store' }
      : {
          file: env['TOKEN_FILE'] ?? '/var/run/secrets/tokens/secret-store-token',
          ...(refreshIntervalMs === undefined ? {} : { refreshIntervalMs }),
        },
    tokenHeader,
    secretStoreTimeoutMs: timeout,
    audience: env['API_AUDIENCE'] ?? 'api',
  };
}

function isTokenHeader(value: string): value is TokenHeader {
  return (TOKEN_HEADERS as readonly string[]).includes(value);
}
