import { type KeyObject, randomUUID } from 'node:crypto';
import { signJwt } from '@k8s-auth/nestjs/testing';

export interface DecodedJwt {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signature: string;
}

const encode = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');

/** Reads a JWT without checking it: to copy the shape of a token the API server minted. */
export function decodeJwt(token: string): DecodedJwt {
  const [header, payload, signature] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')),
    signature,
  };
}

/**
 * Signs `payload` as an RS256 JWS with `key` (PEM or KeyObject) and the members of `header` (a minted token's `kid`,
 * say), the way kube-apiserver signs its tokens: with the testing kit's signer.
 */
export function signRs256(key: string | KeyObject, header: Record<string, unknown>, payload: object): string {
  return signJwt(key, payload, { ...header, alg: 'RS256' });
}

/** An unsigned JWT (`alg: none`), with `signature` as its third segment (RFC 7519 says empty). */
export function unsignedJwt(payload: object, signature = ''): string {
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(payload)}.${signature}`;
}

/** Replaces the header of a signed token and keeps its payload and signature: a header edited after signing. */
export function withHeader(token: string, header: Record<string, unknown>): string {
  const [, payload, signature] = token.split('.');
  return `${encode(header)}.${payload}.${signature}`;
}

/** Replaces the payload of a signed token and keeps its header and signature: claims edited after signing. */
export function withEditedPayload(token: string, edit: (payload: Record<string, unknown>) => void): string {
  const [header, , signature] = token.split('.');
  const { payload } = decodeJwt(token);
  edit(payload);
  return `${header}.${encode(payload)}.${signature}`;
}

/**
 * The claims of a real minted token with times shifted: `issuedAt` and `expiresAt` in seconds since
 * the epoch, a fresh `jti`. Everything else (issuer, audience, `kubernetes.io` claims) as minted.
 */
export function retimedClaims(
  minted: Record<string, unknown>,
  issuedAt: number,
  expiresAt: number,
): Record<string, unknown> {
  return { ...minted, iat: issuedAt, nbf: issuedAt, exp: expiresAt, jti: randomUUID() };
}

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Another spelling of the same bytes: the last character of a segment whose length leaves 2 or 3 over
 * 4 carries 4 or 2 bits no byte uses, which an encoder leaves zero and a lenient decoder ignores. The
 * lowest of them is set in the last such segment (the signature of an RS256 token). Undefined if no
 * segment has unused bits.
 */
export function nonCanonicalSpelling(token: string): string | undefined {
  const segments = token.split('.');
  for (let i = segments.length - 1; i >= 0; i--) {
    const segment = segments[i];
    if (segment.length % 4 !== 2 && segment.length % 4 !== 3) continue;
    const last = BASE64URL_ALPHABET.indexOf(segment[segment.length - 1]);
    if (last < 0) continue;
    const bytes = Buffer.from(segment, 'base64url');
    if (bytes.toString('base64url') !== segment) throw new Error(`segment ${i} is not canonical base64url already`);
    const spelled = `${segment.slice(0, -1)}${BASE64URL_ALPHABET[last ^ 1]}`;
    if (!Buffer.from(spelled, 'base64url').equals(bytes)) throw new Error(`segment ${i}: its new spelling differs`);
    segments[i] = spelled;
    return segments.join('.');
  }
  return undefined;
}
