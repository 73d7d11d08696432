import { KeyObject } from 'node:crypto';
import { kubernetesKeyId } from '../../testing/jwt';
import { type KubernetesApiClient, KubernetesApiError } from '../kube/kubernetes-api.client';

// The API server's OIDC discovery documents, served by a fake for the unit specs of local verification; the real
// thing is in local-jwt.authenticator.integration.spec.ts.

export const ISSUER = 'https://127.0.0.1:6443';
export const DISCOVERY_PATH = '/.well-known/openid-configuration';
export const JWKS_PATH = '/openid/v1/jwks';

/** A public key as the API server publishes it in its JWKS, with `extra` members added or overridden. */
export function jwkOf(key: KeyObject, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...key.export({ format: 'jwk' }), kid: kubernetesKeyId(key), use: 'sig', ...extra };
}

/** What KubernetesApiClient offers SigningKeys, over a JWKS that a test changes at will. */
export class FakeApiServer {
  /** The JWKS entries served; public keys are published as the API server does. */
  keys: Array<KeyObject | Record<string, unknown>> = [];
  discovery: Record<string, unknown> = { issuer: ISSUER, jwks_uri: `${ISSUER}${JWKS_PATH}` };
  /** Where the JWKS is served. */
  jwksPath = JWKS_PATH;
  /** Served as the JWKS instead of {@link keys}. */
  jwksDocument: unknown;
  /** Every request is refused as if the API server could not be reached. */
  down = false;
  /** Requests wait for {@link release}. */
  hold = false;
  /** Paths asked for, with their Accept header. */
  readonly asked: Array<{ path: string; accept?: string }> = [];
  private waiting: Array<() => void> = [];

  constructor(keys: Array<KeyObject | Record<string, unknown>> = []) {
    this.keys = keys;
  }

  async get<T>(path: string, accept?: string): Promise<T> {
    this.asked.push({ path, accept });
    if (this.hold) await new Promise<void>((resolve) => this.waiting.push(resolve));
    if (this.down) throw new KubernetesApiError('unavailable', `${path}: connect ECONNREFUSED`);
    if (path === DISCOVERY_PATH) return this.discovery as T;
    if (path === this.jwksPath) {
      return (this.jwksDocument ?? { keys: this.keys.map((k) => (k instanceof KeyObject ? jwkOf(k) : k)) }) as T;
    }
    throw new KubernetesApiError('rejected', `${path}: HTTP 404`);
  }

  isApiServer(url: URL): boolean {
    return url.origin === ISSUER;
  }

  release(): void {
    this.hold = false;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  get paths(): string[] {
    return this.asked.map((a) => a.path);
  }

  /** Fetches of the keys begun: each asks for the discovery document first. */
  get fetches(): number {
    return this.paths.filter((p) => p === DISCOVERY_PATH).length;
  }

  get client(): KubernetesApiClient {
    return this as unknown as KubernetesApiClient;
  }
}
