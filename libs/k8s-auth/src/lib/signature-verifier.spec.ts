import { Logger } from '@nestjs/common';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { serviceAccountClaims, signJwt } from '../testing/jwt';
import {
  decodeJws,
  type JwsAlgorithm,
  runSignatureCheck,
  type SignatureCheck,
  signatureCheck,
} from './service-account-jwt';
import { SIGNATURE_WORKER_SOURCE, SignatureVerifier } from './signature-verifier';

// Real keys, real signatures and a real worker thread: the thread must answer exactly as the inline check does.

const pairs: Record<JwsAlgorithm, { publicKey: KeyObject; privateKey: KeyObject }> = {
  RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  ES384: generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  ES512: generateKeyPairSync('ec', { namedCurve: 'P-521' }),
};
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });

const claims = () =>
  serviceAccountClaims({
    issuer: 'https://127.0.0.1:6443',
    namespace: 'api',
    serviceAccount: 'api',
    serviceAccountUid: 'sa-uid',
    audiences: ['secret-store'],
    expirationSeconds: 600,
  });

function checkOf(token: string, alg: JwsAlgorithm): SignatureCheck {
  const jws = decodeJws(token);
  const check = jws && signatureCheck(jws, { alg, key: pairs[alg].publicKey });
  if (!check) throw new Error('no check');
  return check;
}

/** For each algorithm: a good signature, one by another key, and a payload edited after signing. */
function cases(): Array<{ name: string; check: SignatureCheck; valid: boolean }> {
  return (Object.keys(pairs) as JwsAlgorithm[]).flatMap((alg) => {
    const good = signJwt(pairs[alg].privateKey, claims());
    const [h, p, s] = good.split('.');
    const edited = Buffer.from(JSON.stringify({ ...claims(), sub: 'system:serviceaccount:kube-system:admin' }));
    const byOther =
      alg === 'RS256'
        ? signJwt(other.privateKey, claims())
        : signJwt(
            generateKeyPairSync('ec', { namedCurve: pairs[alg].publicKey.asymmetricKeyDetails?.namedCurve ?? '' })
              .privateKey,
            claims(),
          );
    return [
      { name: `${alg} good`, check: checkOf(good, alg), valid: true },
      { name: `${alg} another key`, check: checkOf(byOther, alg), valid: false },
      { name: `${alg} edited`, check: checkOf(`${h}.${edited.toString('base64url')}.${s}`, alg), valid: false },
      {
        name: `${alg} garbled`,
        check: { ...checkOf(good, alg), signature: Buffer.from(p.slice(0, 40)) },
        valid: false,
      },
    ];
  });
}

describe('SignatureVerifier', () => {
  // Every new verification thread logs its start at debug level: not wanted in the test output.
  let quiet: jest.SpyInstance;
  beforeAll(() => (quiet = jest.spyOn(Logger.prototype, 'debug').mockImplementation(() => undefined)));
  afterAll(() => quiet.mockRestore());
  const verifiers: SignatureVerifier[] = [];
  const make = (thread: boolean, workerSource?: string, answerTimeoutMs?: number) => {
    const verifier = new SignatureVerifier({ thread, workerSource, answerTimeoutMs });
    verifiers.push(verifier);
    return verifier;
  };
  afterEach(async () => {
    for (const verifier of verifiers.splice(0)) await verifier.close();
  });

  it.each([true, false])('answers as the inline check does (thread: %s)', async (thread) => {
    const verifier = make(thread);
    const all = cases();
    // Together, so that the thread gets them in one batch.
    const answers = await Promise.all(all.map((c) => verifier.verify(c.check)));
    expect(answers).toEqual(all.map((c) => c.valid));
    for (const c of all.filter((x) => !x.name.endsWith('garbled'))) expect(runSignatureCheck(c.check)).toBe(c.valid);
  });

  it('keeps answers in order across batches, keys registered once per thread', async () => {
    const verifier = make(true);
    const all = cases();
    const first = await Promise.all(all.map((c) => verifier.verify(c.check)));
    const second = await Promise.all([...all].reverse().map((c) => verifier.verify(c.check)));
    expect(first).toEqual(all.map((c) => c.valid));
    expect(second).toEqual([...all].reverse().map((c) => c.valid));
  });

  it('settles a check whose answer is waiting as soon as another check is asked for, without the event loop', async () => {
    const verifier = make(true);
    const [good, byOther] = cases();
    await verifier.verify(good.check); // the thread is up and has the key
    let settled: boolean | undefined;
    void verifier.verify(byOther.check).then((valid) => (settled = valid));
    await new Promise((resolve) => setImmediate(resolve)); // the check is posted in this turn's check phase
    // Hold the event loop, as a long turn of requests would, while the thread answers: the answer waits on the port.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1_000);
    expect(settled).toBeUndefined();
    const next = verifier.verify(good.check);
    await Promise.resolve(); // microtasks only: no poll phase has run since the wait
    expect(settled).toBe(false);
    expect(await next).toBe(true);
  });

  it('checks inline when the thread dies, and after close()', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      // A thread that dies at once: every check still gets the right answer, from the main thread.
      const dying = make(true, 'process.exit(3)');
      const all = cases();
      expect(await Promise.all(all.map((c) => dying.verify(c.check)))).toEqual(all.map((c) => c.valid));
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('thread stopped: checking inline'));
      expect(await Promise.all(all.map((c) => dying.verify(c.check)))).toEqual(all.map((c) => c.valid));

      const closing = make(true);
      const pending = all.map((c) => closing.verify(c.check));
      await closing.close();
      expect(await Promise.all(pending)).toEqual(all.map((c) => c.valid));
      expect(await closing.verify(all[0].check)).toBe(true);
    } finally {
      warn.mockRestore();
    }
  });

  it('gives up a thread that keeps a batch too long, and checks its batch inline', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      // Takes the keys, then spins forever on the first batch: it never answers, and only terminate() stops it.
      const stuck = "require('node:worker_threads').parentPort.on('message', (m) => { if (m.checks) for (;;) {} });";
      const verifier = make(true, stuck, 300);
      const all = cases();
      const started = Date.now();
      expect(await Promise.all(all.map((c) => verifier.verify(c.check)))).toEqual(all.map((c) => c.valid));
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('thread has not answered for 0.3 s: checking inline'));
      // For the next few seconds, checks run inline at once.
      expect(await Promise.all(all.map((c) => verifier.verify(c.check)))).toEqual(all.map((c) => c.valid));
      expect(warn).toHaveBeenCalledTimes(1);
    } finally {
      warn.mockRestore();
    }
  });

  it('keeps a thread that is behind but still answering, however old its queue', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      // 100 ms per batch after the first, against a timeout of 400 ms: the eighth batch waits about 800 ms, but an
      // answer comes every 100 ms.
      const slow = SIGNATURE_WORKER_SOURCE.replace(
        'const checks = message.checks;',
        'const until = Date.now() + (message.batch > 0 ? 100 : 0); while (Date.now() < until); const checks = message.checks;',
      );
      expect(slow).not.toBe(SIGNATURE_WORKER_SOURCE);
      const verifier = make(true, slow, 400);
      const all = cases();
      await verifier.verify(all[0].check); // batch 0: the thread is up and has the key
      const started = Date.now();
      const answers: Array<Promise<boolean[]>> = [];
      for (let i = 0; i < 8; i++) {
        answers.push(Promise.all(all.map((c) => verifier.verify(c.check))));
        await new Promise((resolve) => setImmediate(resolve)); // one batch per turn
      }
      expect(await Promise.all(answers)).toEqual(answers.map(() => all.map((c) => c.valid)));
      expect(Date.now() - started).toBeGreaterThanOrEqual(750); // eight batches of 100 ms on the thread, in turn
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it('takes its answers from the thread', async () => {
    // A thread that calls every signature good: proof that the answers are the thread's, not computed inline.
    const lying = SIGNATURE_WORKER_SOURCE.replace('results[n] = verify(', 'results[n] = 1 || verify(');
    expect(lying).not.toBe(SIGNATURE_WORKER_SOURCE);
    const bad = cases().filter((c) => !c.valid);
    const liar = make(true, lying);
    const honest = make(true);
    expect(await Promise.all(bad.map((c) => liar.verify(c.check)))).toEqual(bad.map(() => true));
    expect(await Promise.all(bad.map((c) => honest.verify(c.check)))).toEqual(bad.map(() => false));
  });
});
