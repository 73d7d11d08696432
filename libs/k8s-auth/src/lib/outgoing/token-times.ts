import { createDecoder } from 'fast-jwt';

/** The time claims of a JWT. Read without checking the signature: never trust them for a decision to accept. */
export interface TokenTimes {
  issuedAt?: Date;
  notBefore?: Date;
  expiresAt?: Date;
}

/** The token is not a JWT whose payload is a JSON object. The message never contains the token. */
export class MalformedTokenError extends Error {
  override readonly name = 'MalformedTokenError';
}

const decodePayload = createDecoder();

/**
 * Decodes `iat`, `nbf` and `exp` from a JWT's payload. Claims that are absent, not finite numbers or out of Date's
 * range are left out: a token source can fall back to a fixed refresh period for them.
 */
export function readTokenTimes(token: string): TokenTimes {
  let payload: Record<string, unknown>;
  try {
    payload = decodePayload(token);
  } catch {
    throw new MalformedTokenError('token is not a JWT with a JSON object as its payload');
  }
  const times: TokenTimes = {};
  const issuedAt = numericDate(payload['iat']);
  const notBefore = numericDate(payload['nbf']);
  const expiresAt = numericDate(payload['exp']);
  if (issuedAt) times.issuedAt = issuedAt;
  if (notBefore) times.notBefore = notBefore;
  if (expiresAt) times.expiresAt = expiresAt;
  return times;
}

/**
 * When to fetch a fresh token: `fraction` of the way through its lifetime, the kubelet's own rule (it rotates
 * projected tokens at 80 %). Undefined when `iat` or `exp` is unknown. Already past for a token with `exp <= iat`,
 * meaning "renew now".
 */
export function renewalTime(times: TokenTimes, fraction = 0.8): Date | undefined {
  if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`fraction must be between 0 and 1, got ${fraction}`);
  if (!times.issuedAt || !times.expiresAt) return undefined;
  const issuedAt = times.issuedAt.getTime();
  return new Date(issuedAt + fraction * (times.expiresAt.getTime() - issuedAt));
}

// NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional.
function numericDate(claim: unknown): Date | undefined {
  if (typeof claim !== 'number' || !Number.isFinite(claim)) return undefined;
  const date = new Date(claim * 1000);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
