import { ConnectionMemo } from './connection-memo';
import type { CallerIdentity, ReviewResult } from './token-reviewer';

const CALLER: CallerIdentity = {
  username: 'system:serviceaccount:api:api',
  namespace: 'api',
  serviceAccount: 'api',
  groups: [],
  audiences: ['secret-store'],
};
const ACCEPTED = { accepted: true, caller: CALLER } as const satisfies ReviewResult;

function jwt(payload: object): string {
  const encode = (part: object) => Buffer.from(JSON.stringify(part)).toString('base64url');
  return `${encode({ alg: 'RS256' })}.${encode(payload)}.c2lnbmF0dXJl`;
}

describe('ConnectionMemo', () => {
  let now: number;
  const clock = { now: () => now };
  const audiences = ['secret-store'];
  const token = jwt({ exp: 2_000_000_000 });

  beforeEach(() => (now = 1_000_000_000_000));

  it('gives back what a connection had accepted, for the same token and audiences only', () => {
    const memo = new ConnectionMemo(1_000, clock);
    const connection = {};
    memo.remember(connection, token, audiences, ACCEPTED);
    expect(memo.recall(connection, token, audiences)).toBe(ACCEPTED);
    expect(memo.recall(connection, `${token}x`, audiences)).toBeUndefined();
    expect(memo.recall(connection, token.slice(0, -1), audiences)).toBeUndefined();
    // Another route's audience list, even with the same words, is another question.
    expect(memo.recall(connection, token, ['secret-store'])).toBeUndefined();
    expect(memo.recall({}, token, audiences)).toBeUndefined();
    expect(memo.recall(undefined, token, audiences)).toBeUndefined();
  });

  it('keeps one token per connection: a new one replaces the old', () => {
    const memo = new ConnectionMemo(1_000, clock);
    const connection = {};
    const other = jwt({ exp: 2_000_000_000, jti: 'other' });
    memo.remember(connection, token, audiences, ACCEPTED);
    memo.remember(connection, other, audiences, ACCEPTED);
    expect(memo.recall(connection, token, audiences)).toBeUndefined();
    expect(memo.recall(connection, other, audiences)).toBe(ACCEPTED);
  });

  it('forgets after its lifetime', () => {
    const memo = new ConnectionMemo(1_000, clock);
    const connection = {};
    memo.remember(connection, token, audiences, ACCEPTED);
    now += 999;
    expect(memo.recall(connection, token, audiences)).toBe(ACCEPTED);
    now += 1;
    expect(memo.recall(connection, token, audiences)).toBeUndefined();
    now -= 500; // forgotten for good, not hidden
    expect(memo.recall(connection, token, audiences)).toBeUndefined();
  });

  it("never past the token's exp", () => {
    const memo = new ConnectionMemo(1_000, clock);
    const connection = {};
    const expiring = jwt({ exp: (now + 300) / 1000 });
    memo.remember(connection, expiring, audiences, ACCEPTED);
    now += 299;
    expect(memo.recall(connection, expiring, audiences)).toBe(ACCEPTED);
    now += 1;
    expect(memo.recall(connection, expiring, audiences)).toBeUndefined();
  });

  it('bounds a token without a readable exp by its lifetime alone', () => {
    const memo = new ConnectionMemo(1_000, clock);
    const connection = {};
    memo.remember(connection, 'a.b.c', audiences, ACCEPTED);
    expect(memo.recall(connection, 'a.b.c', audiences)).toBe(ACCEPTED);
    now += 1_000;
    expect(memo.recall(connection, 'a.b.c', audiences)).toBeUndefined();
  });

  it('remembers nothing with a lifetime of 0', () => {
    const memo = new ConnectionMemo(0, clock);
    const connection = {};
    memo.remember(connection, token, audiences, ACCEPTED);
    expect(memo.recall(connection, token, audiences)).toBeUndefined();
  });
});
