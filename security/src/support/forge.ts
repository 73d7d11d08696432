import { type KeyObject, randomUUID, sign } from 'node:crypto';

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

/** Signs `payload` as an RS256 JWS with `key` (PEM or KeyObject), the way kube-apiserver signs its tokens. */
export function signRs256(key: string | KeyObject, header: Record<string, unknown>, payload: object): string {
  const input = `${encode({ ...header, alg: 'RS256' })}.${encode(payload)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

/** An unsigned JWT (`alg: none`), with `signature` as its third segment (RFC 7519 says empty). */
export function unsignedJwt(payload: object, signature = ''): string {
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(payload)}.${signature}`;
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
