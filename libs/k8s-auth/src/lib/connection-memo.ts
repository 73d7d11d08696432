import { tokenExpiry } from './jwt-claims';
import type { ReviewResult } from './token-reviewer';

type Accepted = Extract<ReviewResult, { accepted: true }>;

interface Remembered {
  token: string;
  audiences: readonly string[];
  result: Accepted;
  /** Milliseconds since the epoch. */
  until: number;
  /** Whether `until` has been capped at the token's `exp` yet (done on first reuse, not for every new token). */
  capped: boolean;
}

/** Milliseconds since the epoch; injectable so tests control time. */
export interface MemoClock {
  now(): number;
}

/**
 * The last accepted token of each connection, reused for the connection's next requests for up to `lifetimeMs`.
 *
 * A caller on a keep-alive connection sends the same token with every request. Matching it against the previous one
 * is a string comparison, where the review cache costs a SHA-256 of the whole token (about 1.2 KB): in the benchmark
 * that hash was the largest part of the guard's cost on a cached request. The memo holds the raw token, but only on
 * the connection that sent it (as the request itself does while it is served), only after the token was accepted,
 * and it goes with the connection. Nothing but an identical token on the same connection and route audiences matches.
 *
 * A remembered answer is reused for at most `lifetimeMs` (1 s in the guard) and never past the token's `exp`, so a
 * revoked token is refused at most that much later than the review cache alone would refuse it.
 */
export class ConnectionMemo {
  private readonly byConnection = new WeakMap<object, Remembered>();

  constructor(
    private readonly lifetimeMs: number,
    private readonly clock: MemoClock = Date,
  ) {}

  /** The accepted result remembered for exactly this token and audiences on `connection`, if still fresh. */
  recall(connection: object | undefined, token: string, audiences: readonly string[]): Accepted | undefined {
    if (connection === undefined) return undefined;
    const remembered = this.byConnection.get(connection);
    if (remembered === undefined || remembered.token !== token || remembered.audiences !== audiences) return undefined;
    if (!remembered.capped) {
      remembered.capped = true;
      const expiresAt = tokenExpiry(token);
      if (expiresAt !== undefined) remembered.until = Math.min(remembered.until, expiresAt.getTime());
    }
    if (this.clock.now() >= remembered.until) {
      this.byConnection.delete(connection);
      return undefined;
    }
    return remembered.result;
  }

  /** Remembers an accepted `result` for `token` on `connection`, replacing what the connection had. */
  remember(connection: object | undefined, token: string, audiences: readonly string[], result: Accepted): void {
    if (connection === undefined || !(this.lifetimeMs > 0)) return;
    this.byConnection.set(connection, {
      token,
      audiences,
      result,
      until: this.clock.now() + this.lifetimeMs,
      capped: false,
    });
  }
}
