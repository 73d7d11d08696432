import { isDns1123Label, isDns1123Subdomain } from '../kube/kubernetes-names';
import { DEFAULTS } from './k8s-auth.constants';
import { integerBetween, invalidOption, isPlainObject, nonNegative, timerMs } from './option-checks';

/** A `tokenSources` entry read from a file the kubelet projects. */
export interface ResolvedProjectedTokenFile {
  readonly kind: 'file';
  readonly file: string;
  readonly refreshIntervalMs: number;
  readonly waitForFileMs: number;
}

/** A `tokenSources` entry minted through the TokenRequest API. */
export interface ResolvedTokenRequest {
  readonly kind: 'tokenRequest';
  readonly namespace: string;
  /** The ServiceAccount's name. */
  readonly serviceAccount: string;
  readonly audience: string;
  readonly expirationSeconds: number;
  readonly refreshIntervalMs: number;
}

export type ResolvedTokenSource = ResolvedProjectedTokenFile | ResolvedTokenRequest;

/** The API server's bounds of a TokenRequest's `expirationSeconds` (10 minutes to 2^32 s). */
const MIN_EXPIRATION_SECONDS = 600;
const MAX_EXPIRATION_SECONDS = 2 ** 32;

const FILE_SOURCE_KEYS = ['file', 'refreshIntervalMs', 'waitForFileMs'] as const;
const REQUEST_SOURCE_KEYS = ['audience', 'expirationSeconds'] as const;

/** The `tokenSources` option, each entry with its defaults applied and checked. */
export function resolveTokenSources(sources: unknown): ReadonlyMap<string, ResolvedTokenSource> {
  const resolved = new Map<string, ResolvedTokenSource>();
  if (sources === undefined || sources === null) return resolved;
  if (!isPlainObject(sources)) throw invalidOption('tokenSources', 'an object of token sources by name', sources);
  for (const [name, entry] of Object.entries(sources)) resolved.set(name, resolveTokenSource(name, entry));
  return resolved;
}

function resolveTokenSource(name: string, entry: unknown): ResolvedTokenSource {
  const where = `tokenSources[${JSON.stringify(name)}]`;
  if (!isPlainObject(entry)) {
    throw invalidOption(
      where,
      'a projected file ({ file?, refreshIntervalMs?, waitForFileMs? }) or a TokenRequest source ' +
        '({ serviceAccount, audience, expirationSeconds? })',
      entry,
    );
  }
  // `null` counts as unset, as in the module options.
  const field = (key: string): unknown => entry[key] ?? undefined;
  const leftOut = (keys: readonly string[], kind: string) => {
    const key = keys.find((k) => field(k) !== undefined);
    if (key !== undefined) throw invalidOption(`${where}.${key}`, `left out of ${kind}`, field(key));
  };

  if (field('serviceAccount') === undefined) {
    leftOut(REQUEST_SOURCE_KEYS, 'a projected file source (add serviceAccount for a TokenRequest)');
    const file = field('file');
    return Object.freeze({
      kind: 'file',
      file: file === undefined ? defaultTokenFile(name, where) : nonEmptyString(`${where}.file`, file),
      refreshIntervalMs: timerMs(
        `${where}.refreshIntervalMs`,
        field('refreshIntervalMs') ?? DEFAULTS.tokenRefreshIntervalMs,
        'positive',
      ),
      waitForFileMs: nonNegative(`${where}.waitForFileMs`, field('waitForFileMs') ?? DEFAULTS.tokenWaitForFileMs),
    });
  }

  leftOut(FILE_SOURCE_KEYS, 'a TokenRequest source (an entry with serviceAccount)');
  const account = field('serviceAccount');
  const [namespace, serviceAccount, ...rest] = typeof account === 'string' ? account.split(':') : [];
  if (
    namespace === undefined ||
    serviceAccount === undefined ||
    rest.length > 0 ||
    !isDns1123Label(namespace) ||
    !isDns1123Subdomain(serviceAccount)
  ) {
    throw invalidOption(
      `${where}.serviceAccount`,
      '"namespace:name", a namespace and a ServiceAccount name as Kubernetes spells them',
      account,
    );
  }
  return Object.freeze({
    kind: 'tokenRequest',
    namespace,
    serviceAccount,
    audience: nonEmptyString(`${where}.audience`, field('audience'), "the callee's audience"),
    expirationSeconds: integerBetween(
      `${where}.expirationSeconds`,
      field('expirationSeconds') ?? DEFAULTS.tokenExpirationSeconds,
      MIN_EXPIRATION_SECONDS,
      MAX_EXPIRATION_SECONDS,
      "the API server's bounds",
    ),
    // Not an option: a minted token is renewed at 80 % of its life, or after this long.
    refreshIntervalMs: DEFAULTS.tokenRefreshIntervalMs,
  });
}

/** `<projectedTokenDirectory>/<name>`, for a name that is a plain file name. */
function defaultTokenFile(name: string, where: string): string {
  if (name === '' || name === '.' || name === '..' || /[/\0]/.test(name)) {
    throw invalidOption(
      `${where}.file`,
      `given when the name is not a plain file name in ${DEFAULTS.projectedTokenDirectory}`,
      undefined,
    );
  }
  return `${DEFAULTS.projectedTokenDirectory}/${name}`;
}

function nonEmptyString(name: string, value: unknown, what = 'a path'): string {
  if (typeof value === 'string' && value !== '') return value;
  throw invalidOption(name, `a non-empty string (${what})`, value);
}
