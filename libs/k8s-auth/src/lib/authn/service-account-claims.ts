import { accepted, refused, type AuthenticationResult } from './authentication.types';
import { isDns1123Label, isDns1123Subdomain } from '../kube/kubernetes-names';

const EXTRA = 'authentication.kubernetes.io/';
/** The `kubernetes.io` claims this library checks; any other may bind the token to something only TokenReview knows. */
const KNOWN_CLAIMS = new Set(['namespace', 'serviceaccount', 'pod', 'node', 'secret', 'warnafter']);

/**
 * The caller of a ServiceAccount token whose signature, `iss`, `exp` (a number) and `nbf` are verified, exactly as a
 * TokenReview of it would describe it, with the token's `exp` as the answer's end; or a refusal when the claims do not hold: `aud` must name one of the route's `audiences`,
 * `iat` must not lie ahead by more than the clock skew, and `sub` must match the `kubernetes.io` claims (namespace,
 * service account with its uid, bound pod or node with theirs).
 */
export function serviceAccountCaller(
  payload: Record<string, unknown>,
  audiences: readonly string[],
  expect: { nowMs: number; clockSkewMs: number },
): AuthenticationResult {
  const aud = payload['aud'];
  const tokenAudiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined;
  if (!tokenAudiences || !tokenAudiences.every((a) => typeof a === 'string')) return refused('invalid token');
  // The API server answers with the requested audiences the token is meant for, in the requested order.
  const confirmed = audiences.filter((a) => tokenAudiences.includes(a));
  if (confirmed.length === 0) return refused('wrong audience');

  const iat = payload['iat'];
  if (iat !== undefined && (typeof iat !== 'number' || !(iat * 1000 <= expect.nowMs + expect.clockSkewMs))) {
    return refused('invalid token');
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
  const secret = boundObject(k8s?.['secret']);
  if (pod === null || node === null || secret === null) return refused('invalid token');
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
  return accepted(
    {
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
    },
    (payload['exp'] as number) * 1000,
    {
      serviceAccount: { name, uid },
      ...(pod ? { pod } : {}),
      ...(node ? { node } : {}),
      ...(secret ? { secret } : {}),
      unknown: Object.keys(k8s ?? {}).filter((claim) => !KNOWN_CLAIMS.has(claim)),
    },
  );
}

/**
 * `{ name, uid }` of a bound object; undefined when absent, null when present but malformed. Pods, secrets and nodes
 * are named by DNS subdomains: any other name (a `/`, say) would address something else in a lookup.
 */
function boundObject(value: unknown): { name: string; uid: string } | undefined | null {
  if (value === undefined) return undefined;
  const object = objectOrUndefined(value);
  const name = object?.['name'];
  const uid = object?.['uid'];
  if (typeof name !== 'string' || !isDns1123Subdomain(name) || typeof uid !== 'string' || uid === '') return null;
  return { name, uid };
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}
