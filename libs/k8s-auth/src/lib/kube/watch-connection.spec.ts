import { EventEmitter } from 'node:events';
import type { ClientHttp2Session } from 'node:http2';
import { PingedSession } from './watch-connection';

// The proof of life of the watches' connection, over a session whose PING answers the test gives; the real HTTP/2
// connection to a kube-apiserver is in binding-watch.integration.spec.ts and the security suite's partition case.

/** The parts of an HTTP/2 session PingedSession uses; PINGs wait for the test to answer them. */
class ScriptedSession extends EventEmitter {
  destroyed = false;
  closed = false;
  destroyedWith: Error | undefined;
  readonly pings: Array<(err: Error | null) => void> = [];

  ping(callback: (err: Error | null) => void): boolean {
    this.pings.push(callback);
    return true;
  }

  destroy(error?: Error): void {
    this.destroyed = true;
    this.destroyedWith = error;
    this.emit('close');
  }
}

describe('PingedSession', () => {
  const INTERVAL_MS = 500;
  let session: ScriptedSession;
  let pinged: PingedSession;

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_000_000 });
    session = new ScriptedSession();
    pinged = new PingedSession(session as unknown as ClientHttp2Session, INTERVAL_MS);
  });

  afterEach(() => jest.useRealTimers());

  it('proves nothing before its first PING is answered', () => {
    expect(pinged.provenAt()).toBe(Number.NEGATIVE_INFINITY);
    session.emit('connect');
    expect(session.pings).toHaveLength(1);
    expect(pinged.provenAt()).toBe(Number.NEGATIVE_INFINITY);
  });

  it('dates its proof from when the answered PING was sent, not from when the answer came', () => {
    session.emit('connect');
    const sentAt = Date.now();
    jest.advanceTimersByTime(300);
    session.pings[0](null);
    expect(pinged.provenAt()).toBe(sentAt);
  });

  it('sends one PING at a time, every interval, while the one before is answered', () => {
    session.emit('connect');
    jest.advanceTimersByTime(INTERVAL_MS * 3);
    expect(session.pings).toHaveLength(1);
    session.pings[0](null);
    jest.advanceTimersByTime(INTERVAL_MS);
    expect(session.pings).toHaveLength(2);
    const secondSentAt = Date.now();
    session.pings[1](null);
    expect(pinged.provenAt()).toBe(secondSentAt);
  });

  it('keeps its last proof while a PING goes unanswered, and closes the session after 10 s of silence', () => {
    session.emit('connect');
    session.pings[0](null);
    const proven = pinged.provenAt();
    jest.advanceTimersByTime(INTERVAL_MS);
    expect(session.pings).toHaveLength(2);
    jest.advanceTimersByTime(9_500);
    expect(pinged.provenAt()).toBe(proven);
    expect(session.destroyed).toBe(false);
    jest.advanceTimersByTime(1_000);
    expect(session.destroyed).toBe(true);
    expect(session.destroyedWith?.message).toMatch(/no answer from the API server for 10 s/);
    expect(pinged.provenAt()).toBe(Number.NEGATIVE_INFINITY);
  });

  it('closes a session whose TLS handshake hangs, as an unanswered PING', () => {
    jest.advanceTimersByTime(10_500);
    expect(session.destroyed).toBe(true);
  });

  it('ignores a failed PING: no proof from it', () => {
    session.emit('connect');
    session.pings[0](new Error('ERR_HTTP2_PING_CANCEL'));
    expect(pinged.provenAt()).toBe(Number.NEGATIVE_INFINITY);
  });
});
