import { Logger } from '@nestjs/common';
import type { KeyObject } from 'node:crypto';
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { runSignatureCheck, type SignatureCheck } from './service-account-jwt';

/**
 * The verification thread's code: plain JavaScript run with `eval`, because a bundled app (webpack) has no file of
 * this library to start a worker from. It only runs node:crypto's `verify`, exactly as runSignatureCheck does; every
 * decision about the token stays on the main thread.
 *
 * Messages in: `{ keyId, key }` registers a KeyObject once; `{ batch, checks }` with `checks` a flat list of
 * (signingInput, keyId, hash, ieee-p1363?, signature). Out, on the port it is given as `workerData.answers`:
 * `{ batch, results }`, 1 for a good signature, 0 for a bad one (or one crypto cannot read).
 */
export const SIGNATURE_WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { verify } = require('node:crypto');
const keys = new Map();
parentPort.on('message', (message) => {
  if (message.key) {
    keys.set(message.keyId, message.key);
    return;
  }
  const checks = message.checks;
  const results = new Uint8Array(checks.length / 5);
  for (let i = 0, n = 0; i < checks.length; i += 5, n++) {
    const key = keys.get(checks[i + 1]);
    try {
      const data = Buffer.from(checks[i], 'latin1');
      results[n] = verify(checks[i + 2], data, checks[i + 3] ? { key, dsaEncoding: 'ieee-p1363' } : key, checks[i + 4]) ? 1 : 0;
    } catch {
      results[n] = 0;
    }
  }
  workerData.answers.postMessage({ batch: message.batch, results }, [results.buffer]);
});
`;

/** After the thread dies, checks run inline for this long before a new thread is started. */
const RESTART_DELAY_MS = 5_000;

/**
 * A thread that owes answers and has sent none for this long is stuck: it is given up and its checks run inline. A
 * batch takes well under a millisecond per check, so only a thread that no longer answers comes near it. A thread that
 * is behind but still answering is never given up, however old its queue.
 */
const ANSWER_TIMEOUT_MS = 2_000;

interface Answer {
  batch: number;
  results: Uint8Array;
}

/** The thread, and the port its answers come back on. */
interface VerificationThread {
  worker: Worker;
  answers: MessagePort;
}

interface PendingCheck {
  check: SignatureCheck;
  resolve(valid: boolean): void;
}

interface PostedBatch {
  pending: PendingCheck[];
  /** Date.now() when it was posted. */
  at: number;
}

export interface SignatureVerifierOptions {
  /** Check on a worker thread (true) or on the calling thread. */
  thread: boolean;
  /** The thread's code; tests give one that fails. @default SIGNATURE_WORKER_SOURCE */
  workerSource?: string;
  /** How long a thread that owes answers may send none before it is given up as stuck. @default 2000 */
  answerTimeoutMs?: number;
}

/**
 * Checks JWS signatures on one worker thread, so that the RSA/ECDSA arithmetic of local verification does not hold
 * up the event loop. Checks asked for during one turn of the event loop go together in one message (posting one
 * message per check costs the event loop more than the check itself), and come back together.
 *
 * Answers come back on a port of their own, which is also read synchronously whenever another check is asked for:
 * an answer that arrives during a busy turn would otherwise wait for the next poll phase, behind the rest of the turn.
 * Under the benchmark's load a fifth of the answers are taken that way, about 0.2 ms after the thread sent them,
 * against 0.9 to 1.6 ms for those that wait for the poll phase.
 *
 * The thread is started at the first check and never keeps the process alive. If it dies, or owes answers and sends
 * none for `answerTimeoutMs`, the checks it had are run inline, as is everything for the next few seconds; then a
 * new thread is started. Without a thread (`thread: false`, or after close()), every check runs inline. Either way
 * the answer is the same: only where it is computed changes.
 */
export class SignatureVerifier {
  private readonly logger = new Logger('SignatureVerifier');
  private readonly workerSource: string;
  private thread: VerificationThread | undefined;
  /** The id each KeyObject has on the current thread; a new thread starts with none. */
  private keyIds = new WeakMap<KeyObject, number>();
  private nextKeyId = 0;
  private queued: PendingCheck[] = [];
  private flushScheduled = false;
  /** In the order posted: the first is the oldest. */
  private readonly posted = new Map<number, PostedBatch>();
  private watchdog: NodeJS.Timeout | undefined;
  /** Date.now() of the thread's last answer: a thread that is behind but answering is not stuck. */
  private lastAnswerAt = 0;
  private readonly answerTimeoutMs: number;
  private nextBatch = 0;
  private diedAt = Number.NEGATIVE_INFINITY;
  private closed: boolean;

  constructor(options: SignatureVerifierOptions) {
    this.closed = !options.thread;
    this.workerSource = options.workerSource ?? SIGNATURE_WORKER_SOURCE;
    this.answerTimeoutMs = options.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
  }

  /** Whether `check`'s signature is valid. Never rejects. */
  verify(check: SignatureCheck): Promise<boolean> {
    if (this.closed) return Promise.resolve(runInline(check));
    this.takeAnswers();
    return new Promise((resolve) => {
      this.queued.push({ check, resolve });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // After the poll phase: every request read in this turn has queued its check by then.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Stops the thread; checks it still had, and any later ones, run inline. */
  async close(): Promise<void> {
    this.closed = true;
    const thread = this.thread;
    if (thread) await thread.worker.terminate();
    this.flush();
  }

  /** Settles the checks whose answers are already waiting on the port, without waiting for the event loop. */
  private takeAnswers(): void {
    const answers = this.thread?.answers;
    if (!answers || this.posted.size === 0) return;
    for (let got = receiveMessageOnPort(answers); got; got = receiveMessageOnPort(answers)) {
      this.answered(got.message as Answer);
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const pending = this.queued;
    if (pending.length === 0) return;
    this.queued = [];
    this.takeAnswers();
    const worker = this.running()?.worker;
    if (!worker) {
      for (const p of pending) p.resolve(runInline(p.check));
      return;
    }
    const batch = this.nextBatch++;
    const checks: unknown[] = [];
    try {
      for (const { check } of pending) {
        checks.push(check.signingInput, this.keyIdOn(worker, check.key), check.hash, check.dsaEncoding ? 1 : 0);
        checks.push(check.signature);
      }
      worker.postMessage({ batch, checks });
      this.posted.set(batch, { pending, at: Date.now() });
      this.watch();
    } catch (err) {
      this.logger.warn(`cannot hand signature checks to the verification thread (${describe(err)}): checking inline`);
      for (const p of pending) p.resolve(runInline(p.check));
    }
  }

  /** The thread, started if there is none; undefined when checks must run inline for now. */
  private running(): VerificationThread | undefined {
    if (this.thread) return this.thread;
    if (this.closed || Date.now() - this.diedAt < RESTART_DELAY_MS) return undefined;
    const { port1: answers, port2 } = new MessageChannel();
    let worker: Worker;
    try {
      worker = new Worker(this.workerSource, {
        eval: true,
        name: 'k8s-auth signature verifier',
        workerData: { answers: port2 },
        transferList: [port2],
      });
    } catch (err) {
      answers.close();
      this.logger.warn(`cannot start the signature verification thread (${describe(err)}): checking inline`);
      this.diedAt = Date.now();
      return undefined;
    }
    worker.unref();
    // The answers the checks themselves did not take (takeAnswers) arrive here, when the event loop polls.
    answers.on('message', (answer: Answer) => this.answered(answer));
    answers.unref();
    // Without an 'error' listener a failing thread would take the process down; 'exit' follows and cleans up.
    worker.on('error', (err) => {
      if (!this.closed) this.logger.warn(`the signature verification thread failed (${describe(err)})`);
    });
    const thread = { worker, answers };
    worker.on('exit', () => this.abandon(thread, 'stopped'));
    this.thread = thread;
    this.keyIds = new WeakMap();
    this.logger.debug('started the signature verification thread');
    return thread;
  }

  private keyIdOn(worker: Worker, key: KeyObject): number {
    let id = this.keyIds.get(key);
    if (id === undefined) {
      id = this.nextKeyId++;
      // Messages arrive in order: the thread has the key before the first check that names it. Recorded only once
      // posted, so that a key that could not be posted is never named to the thread.
      worker.postMessage({ keyId: id, key });
      this.keyIds.set(key, id);
    }
    return id;
  }

  private answered({ batch, results }: Answer): void {
    const pending = this.posted.get(batch)?.pending;
    if (!pending) return;
    this.posted.delete(batch);
    this.lastAnswerAt = Date.now();
    for (let i = 0; i < pending.length; i++) pending[i].resolve(results[i] === 1);
  }

  /**
   * One timer while batches are out. The thread is given up when it has owed an answer for `answerTimeoutMs` without
   * sending any: since the oldest batch was posted, or since its last answer, whichever is later.
   */
  private watch(): void {
    if (this.watchdog) return;
    const silentSince = this.silentSince();
    const thread = this.thread;
    if (silentSince === undefined || !thread) return;
    this.watchdog = setTimeout(
      () => {
        this.watchdog = undefined;
        this.takeAnswers();
        const since = this.silentSince();
        if (since !== undefined && this.thread === thread && Date.now() - since >= this.answerTimeoutMs) {
          this.abandon(thread, `has not answered for ${this.answerTimeoutMs / 1000} s`);
          // Not awaited: a thread stuck in native code may take its time to stop, and nothing waits for it any more.
          void thread.worker.terminate();
        } else {
          this.watch();
        }
      },
      Math.max(0, silentSince + this.answerTimeoutMs - Date.now()),
    );
    this.watchdog.unref();
  }

  /** Since when the thread has owed an answer without sending one; undefined when it owes none. */
  private silentSince(): number | undefined {
    const oldest = this.posted.values().next().value;
    return oldest && Math.max(oldest.at, this.lastAnswerAt);
  }

  /** Lets `thread` go (it stopped, or is stuck): answers it had sent are kept, what it had not answered is checked here. */
  private abandon(thread: VerificationThread, what: string): void {
    if (this.thread !== thread) return;
    this.takeAnswers();
    thread.answers.close();
    this.thread = undefined;
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    if (!this.closed) {
      this.diedAt = Date.now();
      this.logger.warn(
        `the signature verification thread ${what}: checking inline, a new thread in ${RESTART_DELAY_MS / 1000} s`,
      );
    }
    const unanswered = [...this.posted.values()].flatMap((b) => b.pending);
    this.posted.clear();
    for (const p of unanswered) p.resolve(runInline(p.check));
  }
}

/** A check that crypto cannot even run (say, an unreadable signature) is a bad signature. */
function runInline(check: SignatureCheck): boolean {
  try {
    return runSignatureCheck(check);
  } catch {
    return false;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
