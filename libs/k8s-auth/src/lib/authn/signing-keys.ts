import { Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { AuthenticationUnavailableError } from './authentication.types';
import type { K8sAuthMetrics } from '../observability/k8s-auth.metrics';
import type { KubernetesApiClient } from '../kube/kubernetes-api.client';

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
  /**
   * Fetches (for a key id not held, or while none are held) start at most once per this interval; a request for a key
   * id not held waits for the next one.
   */
  minRefreshIntervalMs: number;
}

const DISCOVERY_PATH = '/.well-known/openid-configuration';
const JWKS_PATH = '/openid/v1/jwks';
// The API server serves its JWKS as `application/jwk-set+json` only (406 for `application/json` alone).
const JWKS_MEDIA_TYPES = 'application/jwk-set+json, application/json';
/**
 * A key id a fetch has just found missing is refused without another fetch for this long (a flood of one junk key id
 * spends no fetches); a key that any fetch brings in is taken at once all the same.
 */
const MISSING_KEY_TTL_MS = 10_000;
/** Bounds the key ids remembered as missing, by count and by their total length. */
const MISSING_KEYS_MAX = 1_000;
const MISSING_KEYS_MAX_CHARACTERS = 256 * 1024;
const CURVE_ALGORITHMS: Readonly<Record<string, JwsAlgorithm>> = {
  prime256v1: 'ES256',
  secp384r1: 'ES384',
  secp521r1: 'ES512',
};

/**
 * The API server's token signing keys (`/.well-known/openid-configuration`, then its `jwks_uri`), fetched with this
 * service's own credentials and never sent anywhere else. Kept and fetched again every `refreshIntervalMs` in the
 * background (the keys held are kept while the API server cannot be reached). Fetches start at most once per
 * `minRefreshIntervalMs`, whatever asks for them: a request for a key id not held waits for the next fetch (so a key
 * the API server has just added is taken on its first token), and a key id that fetch did not find is refused at once
 * for a while, without another fetch. While no keys are held at all, requests between the attempts are answered
 * unavailable at once.
 */
export class SigningKeys {
  private readonly logger = new Logger('SigningKeys');
  private current: IssuerKeys | undefined;
  private fetching: Promise<IssuerKeys> | undefined;
  /** The fetch that starts once the interval since the last one is over, for the requests waiting on it. */
  private scheduled: Promise<IssuerKeys> | undefined;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private lastError: AuthenticationUnavailableError | undefined;
  /** Key ids (as the caller names them) that the last fetch for them did not find. */
  private readonly missing = new LRUCache<string, true>({
    max: MISSING_KEYS_MAX,
    maxSize: MISSING_KEYS_MAX_CHARACTERS,
    sizeCalculation: (_value, key) => key.length + 1,
    ttl: MISSING_KEY_TTL_MS,
    // Date.now, as the rest of this class (and as fake timers set it).
    perf: { now: () => Date.now() },
  });

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
   * The keys held, fetched first if none are. When `wanted` is not among them (key rotation), the next fetch is
   * waited for, unless `keyId` (what `wanted` looks for, e.g. `RS256 <kid>`) was just fetched for and not found.
   * @throws AuthenticationUnavailableError when the keys cannot be fetched now: none are held, or a key id not held may be one
   * the API server has just added.
   */
  async get(wanted?: (keys: IssuerKeys) => boolean, keyId?: string): Promise<IssuerKeys> {
    const held = this.current;
    if (held && Date.now() - this.lastAttemptAt >= this.options.refreshIntervalMs) {
      this.fetch().catch(() => undefined); // in the background; logged in fetch()
    }
    if (held && (!wanted || wanted(held))) return held;
    if (held && keyId !== undefined && this.missing.has(keyId)) return held;

    let next = this.fetching;
    if (!next) {
      const wait = this.lastAttemptAt + this.options.minRefreshIntervalMs - Date.now();
      if (wait <= 0) next = this.fetch();
      // After a failed fetch, the key wanted may be one the API server has just added: unavailable, not refused.
      else if (this.lastError) throw this.lastError;
      else if (!held)
        throw new AuthenticationUnavailableError("the API server's token signing keys are not fetched yet");
      else next = this.fetchIn(wait);
    }
    const keys = await next;
    if (wanted && keyId !== undefined && !wanted(keys)) this.missing.set(keyId, true);
    return keys;
  }

  /** The fetch `wait` ms from now, shared by every caller until it starts. */
  private fetchIn(wait: number): Promise<IssuerKeys> {
    const asked = Date.now();
    this.scheduled ??= new Promise<void>((resolve) => setTimeout(resolve, wait).unref()).then(() => {
      this.scheduled = undefined;
      if (this.fetching) return this.fetching;
      // Another fetch (the background refresh) started meanwhile: its answer is as new as the one asked for.
      if (this.lastAttemptAt < asked) return this.fetch();
      if (this.lastError) throw this.lastError;
      return this.current ?? this.fetch();
    });
    return this.scheduled;
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
      this.lastError = new AuthenticationUnavailableError(message);
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
