import { isAscii } from 'node:buffer';
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { isDns1123Label, isDns1123Subdomain } from './service-account-username';
import type { CallerIdentity, ReviewResult } from './token-reviewer';

/** The JWS algorithms Kubernetes signs ServiceAccount tokens with (RSA keys: RS256; ECDSA keys: ES256/384/512). */
export type JwsAlgorithm = 'RS256' | 'ES256' | 'ES384' | 'ES512';

/** A public key of the API server's JWKS, ready to verify with. */
export interface VerificationKey {
  kid?: string;
  alg: JwsAlgorithm;
  key: KeyObject;
}

/** A JWT split into its parts; nothing in it is trusted until the signature is verified. */
export interface DecodedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  /** `<header>.<payload>`, the bytes the signature covers. */
  signingInput: string;
  signature: Buffer;
}

interface AlgorithmSpec {
  hash: 'sha256' | 'sha384' | 'sha512';
  keyType: 'rsa' | 'ec';
  /** EC only: the curve as node:crypto names it, and the size of r and of s in the signature. */
  curve?: string;
  coordinateBytes?: number;
}

const ALGORITHMS: Readonly<Record<JwsAlgorithm, AlgorithmSpec>> = {
  RS256: { hash: 'sha256', keyType: 'rsa' },
  ES256: { hash: 'sha256', keyType: 'ec', curve: 'prime256v1', coordinateBytes: 32 },
  ES384: { hash: 'sha384', keyType: 'ec', curve: 'secp384r1', coordinateBytes: 48 },
  ES512: { hash: 'sha512', keyType: 'ec', curve: 'secp521r1', coordinateBytes: 66 },
};

const JWK_CURVES: Readonly<Record<string, JwsAlgorithm>> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const EXTRA = 'authentication.kubernetes.io/';

/** Whether `alg` (a JWS header's) is one this library verifies: never `none`, never an HMAC. */
export function isSupportedAlgorithm(alg: unknown): alg is JwsAlgorithm {
  return typeof alg === 'string' && Object.prototype.hasOwnProperty.call(ALGORITHMS, alg);
}

/**
 * Reads the signing keys of a JWK Set (`/openid/v1/jwks`). Keys that are not for signatures, of another type or
 * algorithm, or unreadable are skipped and counted, so one odd key never hides the others.
 */
export function parseJwks(document: unknown): { keys: VerificationKey[]; skipped: number } {
  const entries = (document as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(entries)) throw new Error('the JWKS has no "keys" list');
  const keys: VerificationKey[] = [];
  let skipped = 0;
  for (const entry of entries) {
    const key = parseJwk(entry);
    if (key) keys.push(key);
    else skipped++;
  }
  return { keys, skipped };
}

function parseJwk(jwk: unknown): VerificationKey | undefined {
  if (typeof jwk !== 'object' || jwk === null) return undefined;
  const { kty, use, alg, kid, n, e, crv, x, y } = jwk as Record<string, unknown>;
  if (use !== undefined && use !== 'sig') return undefined;
  if (kid !== undefined && typeof kid !== 'string') return undefined;
  let implied: JwsAlgorithm | undefined;
  let publicPart: Record<string, string>;
  if (kty === 'RSA' && typeof n === 'string' && typeof e === 'string') {
    implied = 'RS256';
    publicPart = { kty, n, e };
  } else if (kty === 'EC' && typeof crv === 'string' && typeof x === 'string' && typeof y === 'string') {
    implied = JWK_CURVES[crv];
    publicPart = { kty, crv, x, y };
  } else {
    return undefined;
  }
  // A key that names its algorithm is used for that one only, and it must fit the key.
  if (!implied || (alg !== undefined && alg !== implied)) return undefined;
  try {
    // Only the public members: a JWK that (wrongly) carries `d` still yields just the public key.
    const key = createPublicKey({ key: publicPart, format: 'jwk' });
    // RFC 7518 §3.3: RS256 keys have at least 2048 bits (a garbled `n` would otherwise give a 0-bit key).
    if (implied === 'RS256' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return undefined;
    return kid === undefined ? { alg: implied, key } : { kid, alg: implied, key };
  } catch {
    return undefined;
  }
}

/** Splits and decodes a compact JWS; undefined if it is not one (three base64url parts, JSON object header/payload). */
export function decodeJws(token: string): DecodedJws | undefined {
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first < 0 || second < 0 || token.indexOf('.', second + 1) >= 0) return undefined;
  const header = decodeJsonObject(token.slice(0, first));
  const payload = header && decodeJsonObject(token.slice(first + 1, second));
  const signatureText = token.slice(second + 1);
  if (!header || !payload || !isBase64url(signatureText)) return undefined;
  return { header, payload, signingInput: token.slice(0, second), signature: Buffer.from(signatureText, 'base64url') };
}

/**
 * One signature check, ready for node:crypto's `verify`: the algorithm's digest, the signed bytes, the key and the
 * signature. Plain data and a KeyObject, so it can be posted to a worker thread.
 */
export interface SignatureCheck {
  hash: AlgorithmSpec['hash'];
  /** `<header>.<payload>`: base64url text, read as latin1. */
  signingInput: string;
  key: KeyObject;
  /** ECDSA: JWS carries r || s of fixed size (RFC 7518 §3.4), not DER. */
  dsaEncoding?: 'ieee-p1363';
  signature: Uint8Array;
}

/**
 * The check of `jws`'s signature with `key`; undefined when they cannot match: the header names another algorithm
 * than the key's, or the key's type, curve or the signature's size does not fit that algorithm.
 */
export function signatureCheck(jws: DecodedJws, key: VerificationKey): SignatureCheck | undefined {
  if (jws.header['alg'] !== key.alg) return undefined;
  const spec = ALGORITHMS[key.alg];
  if (key.key.asymmetricKeyType !== spec.keyType) return undefined;
  const check: SignatureCheck = {
    hash: spec.hash,
    signingInput: jws.signingInput,
    key: key.key,
    signature: jws.signature,
  };
  if (spec.keyType === 'rsa') return check;
  if (key.key.asymmetricKeyDetails?.namedCurve !== spec.curve) return undefined;
  if (jws.signature.length !== 2 * (spec.coordinateBytes ?? 0)) return undefined;
  return { ...check, dsaEncoding: 'ieee-p1363' };
}

/** Runs `check` on this thread. (The verification thread runs the same call: see SIGNATURE_WORKER_SOURCE.) */
export function runSignatureCheck(check: SignatureCheck): boolean {
  const data = Buffer.from(check.signingInput, 'latin1');
  const key = check.dsaEncoding ? { key: check.key, dsaEncoding: check.dsaEncoding } : check.key;
  return verify(check.hash, data, key, check.signature);
}

export interface ClaimExpectations {
  /** The issuer of the API server's OIDC discovery. */
  issuer: string;
  /** The route's audiences; the token must name at least one. */
  audiences: readonly string[];
  nowMs: number;
  clockSkewMs: number;
}

/**
 * Checks the claims of a token whose signature has been verified, and builds the caller's identity exactly as a
 * TokenReview of it would: `iss`, `aud` against the route's audiences, `exp` (required), `nbf` and `iat` (with
 * `clockSkewMs` either way), `sub` and the `kubernetes.io` claims (namespace, service account, pod, node).
 */
export function checkServiceAccountClaims(payload: Record<string, unknown>, expect: ClaimExpectations): ReviewResult {
  if (payload['iss'] !== expect.issuer) return refused('invalid token');

  const aud = payload['aud'];
  const tokenAudiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined;
  if (!tokenAudiences || !tokenAudiences.every((a) => typeof a === 'string')) return refused('invalid token');
  // The API server answers with the requested audiences the token is meant for, in the requested order.
  const confirmed = expect.audiences.filter((a) => tokenAudiences.includes(a));
  if (confirmed.length === 0) return refused('wrong audience');

  const now = expect.nowMs / 1000;
  const skew = expect.clockSkewMs / 1000;
  const exp = payload['exp'];
  // Without `exp` a token never expires (legacy Secret-based tokens): local verification refuses it.
  if (typeof exp !== 'number' || !Number.isFinite(exp) || now >= exp + skew) return refused('invalid token');
  for (const claim of ['nbf', 'iat'] as const) {
    const value = payload[claim];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value > now + skew) return refused('invalid token');
  }

  const k8s = objectOrUndefined(payload['kubernetes.io']);
  const namespace = k8s?.['namespace'];
  const serviceAccount = objectOrUndefined(k8s?.['serviceaccount']);
  const name = serviceAccount?.['name'];
  const uid = serviceAccount?.['uid'];
  if (
    typeof namespace !== 'string' ||
    !isDns1123Label(namespace) ||
    typeof name !== 'string' ||
    !isDns1123Subdomain(name) ||
    typeof uid !== 'string' ||
    uid === ''
  ) {
    return refused('invalid token');
  }
  const username = `system:serviceaccount:${namespace}:${name}`;
  if (payload['sub'] !== username) return refused('invalid token');

  const pod = boundObject(k8s?.['pod']);
  const node = boundObject(k8s?.['node']);
  if (pod === null || node === null) return refused('invalid token');
  const jti = payload['jti'];
  if (jti !== undefined && typeof jti !== 'string') return refused('invalid token');

  // The same `user.extra` the API server puts in a TokenReview of this token.
  const extra: Record<string, string[]> = {};
  if (jti) extra[`${EXTRA}credential-id`] = [`JTI=${jti}`];
  if (pod) {
    extra[`${EXTRA}pod-name`] = [pod.name];
    extra[`${EXTRA}pod-uid`] = [pod.uid];
  }
  if (node) {
    extra[`${EXTRA}node-name`] = [node.name];
    extra[`${EXTRA}node-uid`] = [node.uid];
  }
  const caller: CallerIdentity = {
    username,
    namespace,
    serviceAccount: name,
    uid,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
    podName: pod?.name,
    podUid: pod?.uid,
    nodeName: node?.name,
    audiences: confirmed,
    ...(Object.keys(extra).length > 0 ? { extra } : {}),
  };
  return { accepted: true, caller };
}

function refused(reason: 'invalid token' | 'wrong audience'): ReviewResult {
  return { accepted: false, reason };
}

/** `{ name, uid }` of a bound object; undefined when absent, null when present but malformed. */
function boundObject(value: unknown): { name: string; uid: string } | undefined | null {
  if (value === undefined) return undefined;
  const object = objectOrUndefined(value);
  const name = object?.['name'];
  const uid = object?.['uid'];
  if (typeof name !== 'string' || name === '' || typeof uid !== 'string' || uid === '') return null;
  return { name, uid };
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function isBase64url(segment: string): boolean {
  // A length leaving remainder 1 cannot be produced by any input; Buffer would silently drop the extra character.
  return segment.length > 0 && segment.length % 4 !== 1 && BASE64URL.test(segment);
}

function decodeJsonObject(segment: string): Record<string, unknown> | undefined {
  if (!isBase64url(segment)) return undefined;
  try {
    const bytes = Buffer.from(segment, 'base64url');
    // Kubernetes' claims are ASCII: read as such at once; anything else must be valid UTF-8.
    const value: unknown = JSON.parse(isAscii(bytes) ? bytes.toString('latin1') : strictUtf8.decode(bytes));
    return objectOrUndefined(value);
  } catch {
    return undefined;
  }
}
