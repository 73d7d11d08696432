/** Request headers that may carry a caller's ServiceAccount token (Node lower-cases header names). */
export const TOKEN_HEADERS = ['authorization', 'x-client-id'] as const;

export type TokenHeader = (typeof TOKEN_HEADERS)[number];

export type TokenExtraction =
  | { kind: 'token'; token: string; header: TokenHeader }
  | { kind: 'missing' }
  /** `reason` is safe to log: it never contains the token or any part of the header value. */
  | { kind: 'malformed'; reason: string };

// Visible ASCII plus space and tab: everything else (control characters, DEL, non-ASCII) is refused.
const FORBIDDEN_CHARACTER = /[^\x20-\x7e\t]/;
const WHITESPACE = /[ \t]/;
// `Bearer` followed by one or more spaces/tabs (RFC 7235 allows 1*SP; tabs are tolerated), then the rest.
const BEARER_CREDENTIALS = /^bearer[ \t]+/i;
// Header, payload and signature, each non-empty base64url (JWS compact serialisation).
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
// The usual header, `Bearer <JWT>`, whose every check below passes: decided in one scan.
const BEARER_JWT = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/;

/**
 * Reads the caller's token from the one of `accepted` present in `headers`, strictly: anything unusual is
 * reported as malformed rather than guessed at, so a confused or hostile request never reaches TokenReview.
 * `maxTokenBytes` is a positive integer, checked once at start-up (`resolveOptions`), not here on every request.
 */
export function extractToken(
  headers: Record<string, string | string[] | undefined>,
  accepted: readonly TokenHeader[],
  maxTokenBytes: number,
): TokenExtraction {
  // Fast path (every guarded request takes it): the thorough checks below would all pass. Anything else goes on to
  // them, which name what is wrong.
  const authorization = headers['authorization'];
  if (typeof authorization === 'string' && accepted.includes('authorization')) {
    const usual = BEARER_JWT.exec(authorization);
    if (
      usual &&
      usual[1].length <= maxTokenBytes &&
      isCanonicalJws(usual[1]) &&
      accepted.every((header) => header === 'authorization' || headers[header] === undefined)
    ) {
      return { kind: 'token', token: usual[1], header: 'authorization' };
    }
  }

  // No list is built: a second header present is enough to refuse. A name listed twice counts once.
  let header: TokenHeader | undefined;
  for (const candidate of accepted) {
    if (headers[candidate] === undefined || candidate === header) continue;
    // RFC 6750 §2: a client must not use more than one method to send the token in a request.
    if (header !== undefined) return malformed(`token in more than one header (${header}, ${candidate})`);
    header = candidate;
  }
  if (header === undefined) return { kind: 'missing' };

  const value = headers[header];
  // Node folds repeated custom headers into 'a, b'; other sources may hand over an array.
  if (typeof value !== 'string') return malformed(`${header} header has several values`);
  if (value.trim() === '') return malformed(`${header} header is empty`);
  if (FORBIDDEN_CHARACTER.test(value)) return malformed(`${header} header contains control or non-ASCII characters`);
  if (value.includes(',')) return malformed(`${header} header has several values`);

  let token: string;
  if (header === 'authorization') {
    const scheme = BEARER_CREDENTIALS.exec(value);
    // The reason never repeats the scheme: a bare token sent without one would be logged as the "scheme".
    if (!scheme) {
      return malformed(
        /^bearer[ \t]*$/i.test(value) ? 'authorization header has no token' : 'authorization scheme is not Bearer',
      );
    }
    token = value.slice(scheme[0].length);
    if (token === '') return malformed('authorization header has no token');
  } else {
    token = value;
  }
  if (WHITESPACE.test(token)) return malformed(`${header} header has whitespace around or inside the token`);
  // The value is ASCII by now, so its length is its size in bytes.
  if (token.length > maxTokenBytes) return malformed(`token is longer than ${maxTokenBytes} bytes`);
  if (!JWT_SHAPE.test(token)) return malformed('token is not a JWT (three dot-separated base64url segments)');
  if (!isCanonicalJws(token)) return malformed('token is not canonical base64url (a JWT has one spelling)');

  return { kind: 'token', token, header };
}

/** A request's headers as Node parses them: `headersDistinct` (Node ≥ 18.3) keeps every value of each. */
export interface RequestHeaders {
  headers: Record<string, string | string[] | undefined>;
  headersDistinct?: Record<string, string[] | undefined>;
  /** Names and values as received, alternating (Node's `rawHeaders`). */
  rawHeaders?: readonly string[];
}

/**
 * The token headers of a request, for {@link extractToken}, with repeats kept: Node's `headers` holds
 * only the first of several `Authorization` headers and drops the others silently, so a request with
 * two would pass as one with the first. A header sent more than once is returned as the list of its
 * values, which extractToken refuses.
 */
export function tokenHeadersOf(
  request: RequestHeaders,
  accepted: readonly TokenHeader[],
): Record<string, string | string[] | undefined> {
  const result: Record<string, string | string[] | undefined> = {};
  for (const header of accepted) {
    const all = maybeRepeated(request, header) ? request.headersDistinct?.[header] : undefined;
    result[header] = all && all.length > 1 ? all : request.headers[header];
  }
  return result;
}

/**
 * False when `header` is certainly not repeated: absent, or once in `rawHeaders`. Node builds `headersDistinct` for all
 * headers on first access, which costs more than the rest of a cached check; a pass over `rawHeaders` does not.
 */
function maybeRepeated(request: RequestHeaders, header: string): boolean {
  if (request.headers[header] === undefined) return false;
  const raw = request.rawHeaders;
  if (!raw) return true;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === header.length && raw[i].toLowerCase() === header && ++seen > 1) return true;
  }
  return false;
}

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Whether every segment of a JWS-shaped token is canonical base64url (RFC 4648 §3.5): no impossible length and no
 * set bits after the last whole byte. Decoders ignore those bits, so without this check one token would have many
 * spellings, each a new cache entry and a new review.
 */
export function isCanonicalJws(token: string): boolean {
  let start = 0;
  while (start <= token.length) {
    const dot = token.indexOf('.', start);
    const end = dot < 0 ? token.length : dot;
    const rest = (end - start) % 4;
    if (rest === 1) return false;
    // Two characters carry one byte (4 spare bits), three carry two (2 spare bits).
    if (rest > 1 && (BASE64URL_ALPHABET.indexOf(token[end - 1]) & (rest === 2 ? 0x0f : 0x03)) !== 0) return false;
    start = end + 1;
  }
  return true;
}

function malformed(reason: string): TokenExtraction {
  return { kind: 'malformed', reason };
}
