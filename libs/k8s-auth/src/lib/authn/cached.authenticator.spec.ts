import { signJwt } from '../../testing/jwt';
import { generateKeyPairSync } from 'node:crypto';
import {
  accepted,
  type CallerIdentity,
  refused,
  type AuthenticationResult,
  AuthenticationUnavailableError,
  type TokenAuthenticator,
} from './authentication.types';
import { type AnswerCacheOptions, CachedAuthenticator } from './cached.authenticator';
import { K8sAuthMetrics } from '../observability/k8s-auth.metrics';

// The caching rules around a stub strategy: pure logic. The guard's specs run them against a real API server.

// lru-cache keeps the `performance` object it found when loaded; here its clock follows Jest's fake Date.
const realPerformance = performance;
const NOW = 1_700_000_000_000;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const caller: CallerIdentity = {
  username: 'system:serviceaccount:api:api',
  namespace: 'api',
  serviceAccount: 'api',
  groups: ['system:serviceaccounts'],
  audiences: ['secret-store'],
};

/** A JWT whose `exp` is `expiresInS` from the fake clock's start, unique by `n`. */
const tokenFor = (n: number, expiresInS = 600) => signJwt(privateKey, { n, exp: NOW / 1000 + expiresInS });

/** Accepts tokens whose payload `n` is even (until their `exp`), refuses odd ones; counts the questions; can be made to fail or wait. */
class StubStrategy implements TokenAuthenticator {
  readonly asked: string[] = [];
  failing = false;
  private held: Array<() => void> | undefined;

  async authenticate(token: string, audiences: readonly string[]): Promise<AuthenticationResult> {
    this.asked.push(`${token.slice(-6)} ${audiences.join(',')}`);
    if (this.held) await new Promise<void>((resolve) => this.held?.push(resolve));
    if (this.failing) throw new AuthenticationUnavailableError('down');
    const { n, exp } = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as {
      n: number;
      exp: number;
    };
    return n % 2 === 0 ? accepted(caller, exp * 1000) : refused('invalid token');
  }

  hold(): void {
    this.held = [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const resolve of held) resolve();
  }
}

describe('CachedAuthenticator', () => {
  let strategy: StubStrategy;
  const cached = (options: Partial<AnswerCacheOptions> = {}) =>
    new CachedAuthenticator(
      strategy,
      { maxEntries: 100, ttlMs: 60_000, refusalTtlMs: 5_000, ...options },
      new K8sAuthMetrics({ metrics: false }),
    );

  beforeEach(() => {
    jest.useFakeTimers({ now: NOW });
    jest.spyOn(realPerformance, 'now').mockImplementation(() => Date.now());
    strategy = new StubStrategy();
  });

  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  it('asks once per token and audience list, for the TTL', async () => {
    const auth = cached();
    const token = tokenFor(2);
    await auth.authenticate(token, ['a', 'b']);
    await auth.authenticate(token, ['b', 'a']);
    expect(strategy.asked).toHaveLength(1);
    await auth.authenticate(token, ['a']);
    expect(strategy.asked).toHaveLength(2);
    jest.advanceTimersByTime(60_001);
    await auth.authenticate(token, ['a', 'b']);
    expect(strategy.asked).toHaveLength(3);
  });

  it("keeps an acceptance no longer than the token's own exp", async () => {
    const auth = cached();
    const token = tokenFor(2, 10);
    await auth.authenticate(token, ['a']);
    jest.advanceTimersByTime(10_001);
    await auth.authenticate(token, ['a']);
    expect(strategy.asked).toHaveLength(2);
  });

  it('keeps a refusal for its own, shorter TTL', async () => {
    const auth = cached();
    const token = tokenFor(1);
    await expect(auth.authenticate(token, ['a'])).resolves.toEqual({ accepted: false, reason: 'invalid token' });
    jest.advanceTimersByTime(5_000);
    await auth.authenticate(token, ['a']);
    expect(strategy.asked).toHaveLength(1);
    jest.advanceTimersByTime(1);
    await auth.authenticate(token, ['a']);
    expect(strategy.asked).toHaveLength(2);
  });

  it('never lets refusals evict an acceptance', async () => {
    const auth = cached({ maxEntries: 10 });
    const good = tokenFor(2);
    await auth.authenticate(good, ['a']);
    for (let n = 1; n < 2_000; n += 2) await auth.authenticate(tokenFor(n), ['a']);
    await auth.authenticate(good, ['a']);
    expect(strategy.asked.filter((q) => q === `${good.slice(-6)} a`)).toHaveLength(1);
  });

  it('asks once for concurrent questions about one token, and caches no error', async () => {
    const auth = cached();
    const token = tokenFor(4);
    strategy.hold();
    const answers = Array.from({ length: 50 }, () => auth.authenticate(token, ['a']));
    strategy.failing = true;
    strategy.release();
    for (const answer of answers) await expect(answer).rejects.toThrow(AuthenticationUnavailableError);
    expect(strategy.asked).toHaveLength(1);
    strategy.failing = false;
    await expect(auth.authenticate(token, ['a'])).resolves.toMatchObject({ accepted: true });
    expect(strategy.asked).toHaveLength(2);
  });

  it('passes every question through with maxEntries 0, concurrent ones still sharing one answer', async () => {
    const auth = cached({ maxEntries: 0 });
    const token = tokenFor(2);
    await auth.authenticate(token, ['a']);
    await auth.authenticate(token, ['a']);
    expect(strategy.asked).toHaveLength(2);
    await Promise.all([auth.authenticate(token, ['a']), auth.authenticate(token, ['a'])]);
    expect(strategy.asked).toHaveLength(3);
  });
});
