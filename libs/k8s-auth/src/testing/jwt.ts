import { createHash, createPrivateKey, createPublicKey, type KeyObject, randomUUID, sign } from 'node:crypto';

/** The header of a token to sign; `alg` and `kid` are derived from the key unless given. */
export interface JwtHeader {
  alg?: string;
  kid?: string;
  [name: string]: unknown;
}

/** What a ServiceAccount token of Kubernetes says; see {@link serviceAccountClaims}. */
export interface ServiceAccountClaimsOptions {
  issuer: string;
  namespace: string;
  serviceAccount: string;
  serviceAccountUid: string;
  audiences: string[];
  /** Binds the token to a pod, as a projected token is. */
  pod?: { name: string; uid: string };
  /** Seconds since the epoch. @default now */
  issuedAt?: number;
  /** @default 600 */
  expirationSeconds?: number;
  /** @default a random UUID */
  jti?: string;
}

/**
 * The key id Kubernetes gives a signing key in its JWKS and in the tokens it signs: the unpadded base64url SHA-256
 * of the public key's DER (SubjectPublicKeyInfo).
 */
export function kubernetesKeyId(key: string | KeyObject): string {
  const publicKey = typeof key !== 'string' && key.type === 'public' ? key : createPublicKey(key);
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64url');
}

/**
 * The claims the API server puts in a ServiceAccount token it issues through TokenRequest, for signing tokens with
 * chosen claims in tests (with `ControlPlane.serviceAccountSigningKey`, or a key the API server does not know).
 */
export function serviceAccountClaims(options: ServiceAccountClaimsOptions): Record<string, unknown> {
  const iat = options.issuedAt ?? Math.floor(Date.now() / 1000);
  return {
    aud: options.audiences,
    exp: iat + (options.expirationSeconds ?? 600),
    iat,
    iss: options.issuer,
    jti: options.jti ?? randomUUID(),
    'kubernetes.io': {
      namespace: options.namespace,
      ...(options.pod ? { pod: { name: options.pod.name, uid: options.pod.uid } } : {}),
      serviceaccount: { name: options.serviceAccount, uid: options.serviceAccountUid },
    },
    nbf: iat,
    sub: `system:serviceaccount:${options.namespace}:${options.serviceAccount}`,
  };
}

/**
 * Signs a JWT (compact JWS) with `privateKey` (PEM or KeyObject, RSA or EC). The header's `alg` defaults to the
 * key's (RS256, or ES256/384/512 by curve) and `kid` to {@link kubernetesKeyId}; give `alg: 'none'` for an unsigned
 * token (empty signature), or any header member to forge odd tokens.
 */
export function signJwt(privateKey: string | KeyObject, payload: object, header: JwtHeader = {}): string {
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  const alg = header.alg ?? defaultAlgorithm(key);
  const fullHeader: JwtHeader = { alg, kid: kubernetesKeyId(key), ...header };
  if (fullHeader.kid === undefined) delete fullHeader.kid;
  const input = `${encode(fullHeader)}.${encode(payload)}`;
  if (alg === 'none') return `${input}.`;
  const hash = { 256: 'sha256', 384: 'sha384', 512: 'sha512' }[alg.slice(2)] ?? 'sha256';
  const signature = alg.startsWith('ES')
    ? sign(hash, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
    : sign(hash, Buffer.from(input), key);
  return `${input}.${signature.toString('base64url')}`;
}

function defaultAlgorithm(key: KeyObject): string {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'prime256v1') return 'ES256';
  if (curve === 'secp384r1') return 'ES384';
  if (curve === 'secp521r1') return 'ES512';
  throw new Error(`no JWS algorithm for a ${key.asymmetricKeyType} key${curve ? ` on ${curve}` : ''}`);
}

function encode(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}
