import { Logger } from '@nestjs/common';
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { ReviewUnavailableError } from './authentication.types';
import type { K8sAuthMetrics } from './k8s-auth.metrics';
import type { KubernetesApiClient } from './kubernetes-api.client';

/** The JWS algorithms Kubernetes signs ServiceAccount tokens with (RSA keys: RS256; ECDSA keys: ES256/384/512). */
export type JwsAlgorithm = 'RS256' | 'ES256' | 'ES384' | 'ES512';

/** A public key of the API server's JWKS, as PEM for the JWT library. */
export interface SigningKey {
  kid?: string;
  alg: JwsAlgorithm;
  pem: string;
}

/** The API server's issuer and signing keys, as its OIDC discovery publishes them. */
export interface IssuerKeys {
  issuer: string;
  keys: readonly SigningKey[];
}

export interface SigningKeysOptions {
  /** The keys are fetched again after this long, in the background. */
  refreshIntervalMs: number;
  /** Fetches (for an unknown key id, or while none are held) happen at most once per this interval. */
  minRefreshIntervalMs: number;
}

const DISCOVERY_PATH = '/.well-known/openid-configuration';
const JWKS_PATH = '/openid/v1/jwks';
// The API server serves its JWKS as `application/jwk-set+json` only (406 for `application/json` alone).
const JWKS_MEDIA_TYPES = 'application/jwk-set+json, application/json';
const CURVE_ALGORITHMS: Readonly<Record<string, JwsAlgorithm>> = {
  prime256v1: 'ES256',
  secp384r1: 'ES384',
  secp521r1: 'ES512',
};

/**
 * The API server's token signing keys (`/.well-known/openid-configuration`, then its `jwks_uri`), fetched with this
 * service's own credentials and never sent anywhere else. Kept and fetched again every `refreshIntervalMs` in the
 * background (the keys held are kept while the API server cannot be reached); fetched at once when asked for a key
 * not held, at most once per `minRefreshIntervalMs`, which also spaces the attempts while no keys are held at all.
 */
export class SigningKeys {
  private readonly logger = new Logger('SigningKeys');
  private current: IssuerKeys | undefined;
  private fetching: Promise<IssuerKeys> | undefined;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private lastError: ReviewUnavailableError | undefined;

  constructor(
    private readonly api: KubernetesApiClient,
    private readonly metrics: K8sAuthMetrics,
    private readonly options: SigningKeysOptions,
  ) {}

  /** The keys held, when they include `wanted` and need no refresh: the usual case, answered without waiting. */
  inHand(wanted: (keys: IssuerKeys) => boolean): IssuerKeys | undefined {
    const held = this.current;
    return held && Date.now() - this.lastAttemptAt < this.options.refreshIntervalMs && wanted(held) ? held : undefined;
  }

  /**
   * The keys held, fetched first if none are; fetched again when `wanted` is not among them (key rotation), unless
   * fetched lately.
   * @throws ReviewUnavailableError when none are held and they cannot be fetched now.
   */
  async get(wanted?: (keys: IssuerKeys) => boolean): Promise<IssuerKeys> {
    const held = this.current;
    if (held && Date.now() - this.lastAttemptAt >= this.options.refreshIntervalMs) {
      this.fetch().catch(() => undefined); // in the background; logged in fetch()
    }
    if (held && (!wanted || wanted(held))) return held;
    if (this.fetching) return this.fetching;
    if (Date.now() - this.lastAttemptAt < this.options.minRefreshIntervalMs) {
      // After a failed fetch, the key wanted may be one the API server has just added: unavailable, not refused.
      if (this.lastError) throw this.lastError;
      if (held) return held;
      throw new ReviewUnavailableError("the API server's token signing keys are not fetched yet");
    }
    return this.fetch();
  }

  /** Fetches the keys now (concurrent callers share one fetch). */
  fetch(): Promise<IssuerKeys> {
    this.fetching ??= this.download().finally(() => (this.fetching = undefined));
    return this.fetching;
  }

  private async download(): Promise<IssuerKeys> {
    this.lastAttemptAt = Date.now();
    try {
      const discovery = await this.api.get<{ issuer?: unknown; jwks_uri?: unknown }>(DISCOVERY_PATH);
      if (typeof discovery.issuer !== 'string' || discovery.issuer === '') {
        throw new Error(`${DISCOVERY_PATH} names no issuer`);
      }
      const jwks = await this.api.get<{ keys?: unknown }>(this.jwksPath(discovery.jwks_uri), JWKS_MEDIA_TYPES);
      if (!Array.isArray(jwks?.keys)) throw new Error('the JWKS has no "keys" list');
      const keys = jwks.keys.map(signingKey).filter((k): k is SigningKey => k !== undefined);
      const skipped = jwks.keys.length - keys.length;
      if (skipped > 0) this.logger.warn(`skipped ${skipped} JWKS key(s) that are not RS256/ES256/384/512`);
      if (keys.length === 0) throw new Error(`the JWKS of ${discovery.issuer} has no usable key`);
      this.current = { issuer: discovery.issuer, keys };
      this.lastError = undefined;
      this.metrics.jwksFetch('success');
      return this.current;
    } catch (err) {
      this.metrics.jwksFetch('error');
      const message =
        `Cannot fetch the API server's token signing keys (${err instanceof Error ? err.message : String(err)})` +
        (this.current ? '; verifying with the keys fetched before' : '');
      this.logger.warn(message);
      this.lastError = new ReviewUnavailableError(message);
      throw this.lastError;
    }
  }

  /**
   * The path of `jwks_uri` when it is on the API server this client talks to; else the API server's own
   * `/openid/v1/jwks`, which serves the same keys: this service's credentials are never sent anywhere else.
   */
  private jwksPath(jwksUri: unknown): string {
    if (typeof jwksUri !== 'string') return JWKS_PATH;
    try {
      const url = new URL(jwksUri);
      return this.api.isApiServer(url) ? `${url.pathname}${url.search}` : JWKS_PATH;
    } catch {
      return JWKS_PATH;
    }
  }
}

/**
 * A JWK as a signing key, or undefined for one that is not for signatures, of another type, an RSA key under 2048
 * bits (RFC 7518 §3.3), or an `alg` that does not fit the key.
 */
function signingKey(jwk: unknown): SigningKey | undefined {
  if (typeof jwk !== 'object' || jwk === null) return undefined;
  const { kty, use, alg, kid, n, e, crv, x, y } = jwk as Record<string, unknown>;
  if ((use !== undefined && use !== 'sig') || (kid !== undefined && typeof kid !== 'string')) return undefined;
  try {
    // Only the public members: a JWK that (wrongly) carries `d` still yields just the public key.
    const key = createPublicKey({
      key: (kty === 'RSA' ? { kty, n, e } : { kty, crv, x, y }) as JsonWebKey,
      format: 'jwk',
    });
    const implied = algorithmOf(key);
    if (!implied || (alg !== undefined && alg !== implied)) return undefined;
    const pem = key.export({ type: 'spki', format: 'pem' }).toString();
    return kid === undefined ? { alg: implied, pem } : { kid, alg: implied, pem };
  } catch {
    return undefined;
  }
}

function algorithmOf(key: KeyObject): JwsAlgorithm | undefined {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return (details?.modulusLength ?? 0) >= 2048 ? 'RS256' : undefined;
  if (key.asymmetricKeyType === 'ec') return CURVE_ALGORITHMS[details?.namedCurve ?? ''];
  return undefined;
}
