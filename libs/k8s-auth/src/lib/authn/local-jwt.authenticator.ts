import { Logger } from '@nestjs/common';
import { createDecoder, createVerifier } from 'fast-jwt';
import { refused, type AuthenticationResult, type TokenAuthenticator } from './authentication.types';
import { debugEnabled, logSafe, tokenFingerprint } from '../observability/log-safe';
import { serviceAccountCaller } from './service-account-claims';
import type { IssuerKeys, SigningKey, SigningKeys } from './signing-keys';

type Verify = (token: string) => Record<string, unknown>;

const ALGORITHMS = new Set(['RS256', 'ES256', 'ES384', 'ES512']);
const decodeComplete = createDecoder({ complete: true });

/**
 * Verifies ServiceAccount tokens without asking the API server per token: the signature against the API server's
 * published keys, `iss`, `exp` (required) and `nbf` by fast-jwt, then the audience and the `kubernetes.io` claims
 * (see serviceAccountCaller). Gives the same caller identity as a TokenReview of a valid token, but cannot know
 * whether the token's pod or service account has been deleted since it was issued.
 */
export class LocalJwtAuthenticator implements TokenAuthenticator {
  private readonly logger = new Logger('LocalJwtVerification');
  /** One fast-jwt verifier per key and issuer, made when first needed. */
  private readonly verifiers = new WeakMap<SigningKey, { issuer: string; verify: Verify }>();

  /**
   * `refuseUnknownBindings`: refuse a token whose `kubernetes.io` claims bind it to something this library does not
   * know, for `verification: 'local'`, where no TokenReview follows to check it.
   */
  constructor(
    private readonly keys: SigningKeys,
    private readonly options: { clockSkewMs: number; refuseUnknownBindings: boolean },
  ) {}

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    // The header only picks the key; fast-jwt decodes and checks the whole token again as it verifies.
    let header: { alg?: unknown; kid?: unknown };
    try {
      header = decodeComplete(token).header as typeof header;
    } catch {
      return this.refuse(token, 'not a JWT');
    }
    const { alg, kid } = header;
    // `alg: none`, HMACs and anything else are refused before any key is looked at.
    if (typeof alg !== 'string' || !ALGORITHMS.has(alg)) return this.refuse(token, `algorithm ${logSafe(alg)}`);
    if (kid !== undefined && typeof kid !== 'string') return this.refuse(token, 'kid is not a string');

    const wanted = (held: IssuerKeys) => candidates(held, alg, kid).length > 0;
    const issuer = this.keys.inHand(wanted) ?? (await this.keys.get(wanted, `${alg} ${kid ?? ''}`));
    const keys = candidates(issuer, alg, kid);
    if (keys.length === 0) return this.refuse(token, 'signed with a key the API server does not publish');

    let payload: Record<string, unknown> | undefined;
    let failure = '';
    for (const key of keys) {
      try {
        payload = this.verifierFor(key, issuer.issuer)(token);
        break;
      } catch (err) {
        failure = (err as { code?: string }).code ?? 'verification failed';
      }
    }
    if (!payload) return this.refuse(token, logSafe(failure));
    const result = serviceAccountCaller(payload, audiences, {
      nowMs: Date.now(),
      clockSkewMs: this.options.clockSkewMs,
    });
    if (!result.accepted) return this.refuse(token, `claims: ${result.reason}`, result);
    const unknown = result.bindings?.unknown ?? [];
    if (this.options.refuseUnknownBindings && unknown.length > 0) {
      // A warning, not a debug line: the mode itself cannot accept such tokens, which an operator may need to know.
      this.logger.warn(
        `token ${tokenFingerprint(token)} refused: its claims ${unknown.map((c) => JSON.stringify(c)).join(', ')} ` +
          "of kubernetes.io bind it to objects only a TokenReview can check; verification 'local+review' or " +
          "'local+watch' sends such tokens to TokenReview",
      );
      return refused('invalid token');
    }
    return result;
  }

  private verifierFor(key: SigningKey, issuer: string): Verify {
    const known = this.verifiers.get(key);
    if (known?.issuer === issuer) return known.verify;
    const verify: Verify = createVerifier({
      key: key.pem,
      algorithms: [key.alg],
      allowedIss: issuer,
      requiredClaims: ['iss', 'exp', 'sub', 'aud'],
      clockTolerance: this.options.clockSkewMs,
    });
    this.verifiers.set(key, { issuer, verify });
    return verify;
  }

  /** `why` holds no value of the token unless escaped (logSafe). */
  private refuse(token: string, why: string, result = refused('invalid token')): AuthenticationResult {
    // A flood of junk tokens pays for no digest while debug lines are off.
    if (debugEnabled(this.logger)) this.logger.debug(`token ${tokenFingerprint(token)} refused: ${why}`);
    return result;
  }
}

/** With a kid, only that key; without one (Kubernetes always sets it), every key of the algorithm. */
function candidates(issuer: IssuerKeys, alg: string, kid: string | undefined): SigningKey[] {
  return issuer.keys.filter((key) => key.alg === alg && (kid === undefined || key.kid === kid));
}
