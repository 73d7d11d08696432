import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { tokenFingerprint } from './bearer-token';
import { API_SERVER_AUDIENCE, DEFAULTS } from './k8s-auth.constants';
import { K8sAuthMetrics } from './k8s-auth.metrics';
import { MODULE_OPTIONS_TOKEN } from './k8s-auth.module-definition';
import type { K8sAuthModuleOptions } from './k8s-auth-options.interface';
import { KubernetesApiClient } from './kubernetes-api.client';
import { ReviewCache } from './review-cache';
import {
  checkServiceAccountClaims,
  type DecodedJws,
  decodeJws,
  isSupportedAlgorithm,
  parseJwks,
  signatureCheck,
  type VerificationKey,
} from './service-account-jwt';
import { SignatureVerifier } from './signature-verifier';
import { SingleFlight } from './single-flight';
import { type ReviewResult, ReviewUnavailableError } from './token-reviewer';

/** The API server's issuer and signing keys, as its OIDC discovery published them. */
interface IssuerKeys {
  issuer: string;
  keys: VerificationKey[];
  fetchedAt: number;
}

interface OpenIdConfiguration {
  issuer?: unknown;
  jwks_uri?: unknown;
}

const DISCOVERY_PATH = '/.well-known/openid-configuration';
const JWKS_PATH = '/openid/v1/jwks';
// The API server serves its JWKS as `application/jwk-set+json` only (406 for `application/json` alone).
const JWKS_MEDIA_TYPES = 'application/jwk-set+json, application/json';

/**
 * Verifies ServiceAccount tokens without asking the API server per token: the signature against the keys the API
 * server publishes (OIDC discovery, `/.well-known/openid-configuration` and `/openid/v1/jwks`, fetched with this
 * service's own credentials), then `iss`, `aud`, `exp`/`nbf`/`iat` (with a clock skew) and the `kubernetes.io`
 * claims. Gives the same result, and the same caller identity, as a TokenReview of a valid token, except that it
 * cannot know whether the token's pod or service account has been deleted since it was issued.
 *
 * The keys are cached and fetched again every `jwksRefreshIntervalMs` in the background (the old ones are kept while
 * the API server cannot be reached), and at once for a token signed with an unknown key id, at most once per
 * `jwksMinRefreshIntervalMs`; concurrent fetches are shared.
 *
 * A token accepted a second time is remembered (under a salted hash, like TokenReview answers) for `cacheTtlMs`, never
 * past its `exp`: a caller that keeps sending it costs a lookup, not another signature check, while a flood of tokens
 * sent once each fills no cache (see ReviewCache's `admitOnRepeat`). Refusals are not remembered: a token refused for
 * an unknown key may be good once the keys are fetched again.
 */
@Injectable()
export class LocalTokenVerifier implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('LocalTokenVerifier');
  private readonly fetches = new SingleFlight<'jwks', IssuerKeys>();
  private readonly accepted: ReviewCache<ReviewResult>;
  private readonly signatures: SignatureVerifier;
  private readonly ttlMs: number;
  private readonly clockSkewMs: number;
  private readonly refreshIntervalMs: number;
  private readonly minRefreshIntervalMs: number;
  private current: IssuerKeys | undefined;
  /** When the last fetch started, successful or not: unknown key ids fetch again only after the minimum interval. */
  private lastFetchAt = Number.NEGATIVE_INFINITY;
  private lastFetchFailed = false;
  private nextRefreshAt = 0;

  constructor(
    @Inject(MODULE_OPTIONS_TOKEN) private readonly options: K8sAuthModuleOptions,
    private readonly api: KubernetesApiClient,
    private readonly metrics: K8sAuthMetrics,
  ) {
    const verification = options.verification ?? 'tokenReview';
    if (!['tokenReview', 'local', 'local+review'].includes(verification)) {
      throw new Error(`verification must be 'tokenReview', 'local' or 'local+review', not '${String(verification)}'`);
    }
    if (verification !== 'tokenReview' && options.audiences === API_SERVER_AUDIENCE) {
      throw new Error(
        `verification '${verification}' checks the token's audience itself and needs this service's own ` +
          "audience: set the option 'audiences' to it (tokens meant for the API server are not verified locally)",
      );
    }
    this.accepted = new ReviewCache({
      maxEntries: options.maxCacheEntries ?? DEFAULTS.maxCacheEntries,
      admitOnRepeat: true,
    });
    const thread = options.verificationThread ?? DEFAULTS.verificationThread;
    if (typeof thread !== 'boolean')
      throw new TypeError(`verificationThread must be true or false, not ${String(thread)}`);
    // The thread starts at the first signature check: in 'tokenReview' mode there is none.
    this.signatures = new SignatureVerifier({ thread });
    this.ttlMs = options.cacheTtlMs ?? DEFAULTS.cacheTtlMs;
    this.clockSkewMs = nonNegative('clockSkewSeconds', options.clockSkewSeconds ?? DEFAULTS.clockSkewSeconds) * 1000;
    this.refreshIntervalMs = nonNegative(
      'jwksRefreshIntervalMs',
      options.jwksRefreshIntervalMs ?? DEFAULTS.jwksRefreshIntervalMs,
    );
    this.minRefreshIntervalMs = nonNegative(
      'jwksMinRefreshIntervalMs',
      options.jwksMinRefreshIntervalMs ?? DEFAULTS.jwksMinRefreshIntervalMs,
    );
  }

  /** In a local mode, fetches the keys as the app starts, so the first request does not wait; a failure is logged only. */
  onApplicationBootstrap(): void {
    if ((this.options.verification ?? 'tokenReview') === 'tokenReview') return;
    this.fetch().catch(() => undefined); // logged in fetch(); requests retry
  }

  async onModuleDestroy(): Promise<void> {
    await this.signatures.close();
  }

  /**
   * Verifies `token` for `audiences` (at least one).
   * @throws ReviewUnavailableError when the keys cannot be fetched and none are cached, or a token names a key id
   *   that is unknown and the keys cannot be fetched again to look for it.
   */
  async verify(token: string, audiences: readonly string[]): Promise<ReviewResult> {
    const key = this.accepted.keyOf(token, audiences);
    const known = this.accepted.get(key);
    if (known) return known;
    const jws = decodeJws(token);
    // `alg: none`, HMACs and anything unknown are refused before any key is looked at.
    if (!jws || !isSupportedAlgorithm(jws.header['alg']) || jws.header['crit'] !== undefined) {
      return this.refuse(token, 'not a JWT signed with RS256 or ES256/384/512');
    }
    const kid = jws.header['kid'];
    if (kid !== undefined && typeof kid !== 'string') return this.refuse(token, 'kid is not a string');

    let issuer = this.keysInHand() ?? (await this.fetch());
    let candidates = candidatesFor(issuer.keys, kid, jws.header['alg']);
    if (candidates.length === 0) {
      // Perhaps the API server has a new key since the last fetch (rotation): look once more (or join the fetch
      // under way), unless looked lately.
      if (this.fetches.inFlight > 0 || Date.now() - this.lastFetchAt >= this.minRefreshIntervalMs) {
        issuer = await this.fetch();
        candidates = candidatesFor(issuer.keys, kid, jws.header['alg']);
      } else if (this.lastFetchFailed) {
        // The keys could not be fetched lately: this may be a key the API server has just added. Fail closed, but
        // as "unavailable", not as a verdict on the token.
        throw new ReviewUnavailableError("the API server's token signing keys cannot be fetched");
      }
    }
    if (candidates.length === 0) return this.refuse(token, 'signed with a key the API server does not publish');
    if (!(await this.signatureMatches(jws, candidates))) return this.refuse(token, 'bad signature');

    const result = checkServiceAccountClaims(jws.payload, {
      issuer: issuer.issuer,
      audiences,
      nowMs: Date.now(),
      clockSkewMs: this.clockSkewMs,
    });
    if (!result.accepted) return this.refuse(token, `claims: ${result.reason}`, result);
    // The claims are checked, so `exp` is a number the API server signed: the cached answer ends with the token.
    this.accepted.set(key, result, this.ttlMs, new Date((jws.payload['exp'] as number) * 1000));
    return result;
  }

  /**
   * Whether one of `keys` (normally the one its kid names) signed `jws`: checked on the verification thread. Not async:
   * with one key, the thread's promise itself is returned, one layer of promises less on every new token.
   */
  private signatureMatches(jws: DecodedJws, keys: readonly VerificationKey[], from = 0): Promise<boolean> {
    for (let i = from; i < keys.length; i++) {
      const check = signatureCheck(jws, keys[i]);
      if (!check) continue;
      const verified = this.signatures.verify(check);
      return i === keys.length - 1 ? verified : verified.then((ok) => ok || this.signatureMatches(jws, keys, i + 1));
    }
    return Promise.resolve(false);
  }

  /** The cached keys, if any, without waiting; a refresh starts in the background once they are old. */
  private keysInHand(): IssuerKeys | undefined {
    if (this.current && Date.now() >= this.nextRefreshAt) this.fetch().catch(() => undefined); // keeps the old keys
    return this.current;
  }

  private fetch(): Promise<IssuerKeys> {
    return this.fetches.do('jwks', async () => {
      this.lastFetchAt = Date.now();
      try {
        const fetched = await this.download();
        this.current = fetched;
        this.lastFetchFailed = false;
        this.nextRefreshAt = fetched.fetchedAt + this.refreshIntervalMs;
        this.metrics.jwksFetch('success');
        return fetched;
      } catch (err) {
        this.lastFetchFailed = true;
        this.metrics.jwksFetch('error');
        // Try again soon, not on every request.
        this.nextRefreshAt = Date.now() + this.minRefreshIntervalMs;
        const message =
          `Cannot fetch the API server's token signing keys (${err instanceof Error ? err.message : String(err)})` +
          (this.current ? '; verifying with the keys fetched before' : '');
        this.logger.warn(message);
        throw new ReviewUnavailableError(message);
      }
    });
  }

  private async download(): Promise<IssuerKeys> {
    const discovery = await this.api.get<OpenIdConfiguration>(DISCOVERY_PATH);
    if (typeof discovery.issuer !== 'string' || discovery.issuer === '') {
      throw new Error(`${DISCOVERY_PATH} names no issuer`);
    }
    const jwks = parseJwks(await this.api.get<unknown>(this.jwksPath(discovery.jwks_uri), JWKS_MEDIA_TYPES));
    if (jwks.skipped > 0) this.logger.warn(`skipped ${jwks.skipped} JWKS key(s) that are not RS256/ES256/384/512`);
    if (jwks.keys.length === 0) throw new Error(`the JWKS of ${discovery.issuer} has no usable key`);
    return { issuer: discovery.issuer, keys: keepKnownKeys(jwks.keys, this.current?.keys), fetchedAt: Date.now() };
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

  private refuse(token: string, why: string, result?: ReviewResult): ReviewResult {
    this.logger.debug(`token ${tokenFingerprint(token)} refused locally: ${why}`);
    return result ?? { accepted: false, reason: 'invalid token' };
  }
}

/**
 * The keys just fetched, with the KeyObject fetched before for each key that has not changed: the verification
 * thread is handed each KeyObject once and keeps it, so a refresh every few minutes must not make new ones.
 */
function keepKnownKeys(fresh: VerificationKey[], known: readonly VerificationKey[] | undefined): VerificationKey[] {
  if (!known) return fresh;
  return fresh.map((key) => known.find((k) => k.kid === key.kid && k.alg === key.alg && k.key.equals(key.key)) ?? key);
}

function candidatesFor(keys: readonly VerificationKey[], kid: string | undefined, alg: unknown): VerificationKey[] {
  // With a kid, only that key; without one (Kubernetes always sets it), every key of the algorithm.
  return keys.filter((key) => key.alg === alg && (kid === undefined || key.kid === kid));
}

function nonNegative(name: string, value: number): number {
  if (!(Number.isFinite(value) && value >= 0))
    throw new RangeError(`${name} must be a non-negative number, got ${value}`);
  return value;
}
