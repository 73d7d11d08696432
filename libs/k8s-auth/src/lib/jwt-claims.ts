/** The time claims of a JWT, for scheduling renewal. Read without checking the signature: never trust them. */
export interface TokenTimes {
  issuedAt?: Date;
  notBefore?: Date;
  expiresAt?: Date;
}

/** The token's payload is not base64url-encoded JSON object. The message never contains the token. */
export class MalformedTokenError extends Error {
  override readonly name = 'MalformedTokenError';
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
// Rejects invalid UTF-8 instead of quietly substituting U+FFFD.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes `iat`, `nbf` and `exp` from a JWT's payload. Claims that are absent, not finite numbers or out of Date's
 * range are left out: a token source can fall back to a fixed refresh period for them.
 */
export function readTokenTimes(token: string): TokenTimes {
  const segments = token.split('.');
  if (segments.length !== 3) throw new MalformedTokenError('token is not a JWT: expected three dot-separated segments');
  const payload = decodePayload(segments[1]);
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
 * The token's `exp`, or undefined when it has none or is not a JWT (legacy tokens are JWTs too, other bearer tokens
 * need not be). Read without verifying: only for bounding how long an answer about a verified token is reused.
 */
export function tokenExpiry(token: string): Date | undefined {
  try {
    return readTokenTimes(token).expiresAt;
  } catch {
    return undefined;
  }
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

function decodePayload(segment: string): Record<string, unknown> {
  // A base64 string whose length leaves remainder 1 cannot be produced by any input; Buffer would silently drop it.
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) {
    throw new MalformedTokenError('JWT payload is not base64url');
  }
  let payload: unknown;
  try {
    payload = JSON.parse(strictUtf8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    throw new MalformedTokenError('JWT payload is not UTF-8 JSON');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new MalformedTokenError('JWT payload is not a JSON object');
  }
  return payload as Record<string, unknown>;
}

// NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional.
function numericDate(claim: unknown): Date | undefined {
  if (typeof claim !== 'number' || !Number.isFinite(claim)) return undefined;
  const date = new Date(claim * 1000);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
