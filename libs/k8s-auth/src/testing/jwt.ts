import { createHash, createPrivateKey, createPublicKey, type KeyObject, randomUUID } from 'node:crypto';
import { type Algorithm, createSigner, type JwtHeader as FastJwtHeader } from 'fast-jwt';

/** The header of a token to sign; `alg` and `kid` are derived from the key unless given. */
export interface JwtHeader {
  /** The algorithm to sign with; one that suits the key. @default RS256 for RSA, ES256/384/512 by the EC curve */
  alg?: string;
  /** @default {@link kubernetesKeyId} of the key; `undefined` leaves it out */
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

/** Per private key (PEM): its kid, and a signer per header; parsing an RSA key costs more than a signature. */
const signingKeys = new Map<string, { kid: string; signers: Map<string, (payload: object) => string> }>();

/**
 * Signs a JWT (compact JWS) with `privateKey` (PEM or KeyObject, RSA or EC) through fast-jwt, the library the guard
 * verifies with. The header is `alg` and `kid` as Kubernetes writes them (no `typ`), then any member of `header`
 * (`kid: undefined` leaves the kid out). The payload is signed as given, within fast-jwt's rules: `exp` and `nbf`
 * are positive integers when present, and no `iat` is added. Tokens no signer makes (`alg: none`, a DER ECDSA
 * signature, an HMAC) are for a test to build by hand.
 */
export function signJwt(privateKey: string | KeyObject, payload: object, header: JwtHeader = {}): string {
  // fast-jwt takes PEM only, and detects RS256 or ES256/384/512 from it.
  const pem =
    typeof privateKey === 'string' ? privateKey : privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  let key = signingKeys.get(pem);
  if (!key) signingKeys.set(pem, (key = { kid: kubernetesKeyId(createPrivateKey(pem)), signers: new Map() }));
  const { alg, ...members } = header;
  const fullHeader = { typ: undefined, kid: key.kid, ...members };
  // Without it, fast-jwt would write `iat: now` into a payload that has none.
  const noTimestamp = (payload as { iat?: unknown }).iat === undefined;
  const id = JSON.stringify([alg, noTimestamp, fullHeader]);
  let sign = key.signers.get(id);
  if (!sign) {
    sign = createSigner({
      key: pem,
      ...(alg === undefined ? {} : { algorithm: alg as Algorithm }),
      noTimestamp,
      header: fullHeader as FastJwtHeader,
    });
    key.signers.set(id, sign);
  }
  return sign(payload);
}
