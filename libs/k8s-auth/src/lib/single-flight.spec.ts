import { SingleFlight } from './single-flight';

// A promise the test settles by hand, to hold work in flight.
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SingleFlight', () => {
  it('runs the work once for concurrent calls with the same key and shares its result', async () => {
    const flights = new SingleFlight<string, string>();
    const gate = deferred<string>();
    const work = jest.fn(() => gate.promise);

    const calls = [flights.do('token', work), flights.do('token', work), flights.do('token', work)];
    expect(work).toHaveBeenCalledTimes(1);
    expect(flights.inFlight).toBe(1);

    gate.resolve('reviewed');
    await expect(Promise.all(calls)).resolves.toEqual(['reviewed', 'reviewed', 'reviewed']);
  });

  it('shares a rejection with every caller', async () => {
    const flights = new SingleFlight<string, string>();
    const gate = deferred<string>();
    const work = jest.fn(() => gate.promise);
    const first = flights.do('token', work);
    const second = flights.do('token', work);

    const failure = new Error('API server unavailable');
    gate.reject(failure);
    await expect(first).rejects.toBe(failure);
    await expect(second).rejects.toBe(failure);
    expect(work).toHaveBeenCalledTimes(1);
  });

  it('runs work separately for different keys', async () => {
    const flights = new SingleFlight<string, string>();
    const a = deferred<string>();
    const b = deferred<string>();
    const first = flights.do('a', () => a.promise);
    const second = flights.do('b', () => b.promise);
    expect(flights.inFlight).toBe(2);

    b.resolve('b-result');
    await expect(second).resolves.toBe('b-result');
    expect(flights.inFlight).toBe(1);
    a.resolve('a-result');
    await expect(first).resolves.toBe('a-result');
    expect(flights.inFlight).toBe(0);
  });

  it('frees the key once the work succeeds, so a later call runs it again', async () => {
    const flights = new SingleFlight<string, number>();
    let runs = 0;
    const work = async () => ++runs;

    await expect(flights.do('token', work)).resolves.toBe(1);
    expect(flights.inFlight).toBe(0);
    await expect(flights.do('token', work)).resolves.toBe(2);
  });

  it('frees the key once the work fails, so a later call retries', async () => {
    const flights = new SingleFlight<string, string>();
    await expect(flights.do('token', () => Promise.reject(new Error('first attempt')))).rejects.toThrow(
      'first attempt',
    );
    expect(flights.inFlight).toBe(0);
    await expect(flights.do('token', async () => 'second attempt')).resolves.toBe('second attempt');
  });

  it('has freed the key by the time callers see the result', async () => {
    const flights = new SingleFlight<string, string>();
    const work = jest.fn(async () => 'reviewed');
    const seenInFlight = await flights.do('token', work).then(() => flights.inFlight);
    expect(seenInFlight).toBe(0);
    // A caller reacting to the result starts new work instead of receiving the settled flight.
    await flights.do('token', work);
    expect(work).toHaveBeenCalledTimes(2);
  });

  it('does not let a caller that joins late receive a result from a later flight', async () => {
    const flights = new SingleFlight<string, string>();
    const first = deferred<string>();
    const firstCall = flights.do('token', () => first.promise);
    first.resolve('first');
    await firstCall;

    const second = deferred<string>();
    const secondCall = flights.do('token', () => second.promise);
    const joined = flights.do('token', () => Promise.resolve('unused'));
    second.resolve('second');
    await expect(secondCall).resolves.toBe('second');
    await expect(joined).resolves.toBe('second');
  });

  it('turns a synchronous throw from the work into a rejection and frees the key', async () => {
    const flights = new SingleFlight<string, string>();
    const failure = new Error('thrown synchronously');
    const call = flights.do('token', () => {
      throw failure;
    });
    await expect(call).rejects.toBe(failure);
    expect(flights.inFlight).toBe(0);
  });

  it('compares object keys by identity', async () => {
    const flights = new SingleFlight<object, string>();
    const gate = deferred<string>();
    const work = jest.fn(() => gate.promise);
    const key = { token: 'x' };
    const calls = [flights.do(key, work), flights.do(key, work), flights.do({ token: 'x' }, work)];
    expect(work).toHaveBeenCalledTimes(2);
    gate.resolve('done');
    await Promise.all(calls);
  });

  it('leaves no unhandled rejection behind when every caller handles the failure', async () => {
    const unhandled = jest.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const flights = new SingleFlight<string, string>();
      const gate = deferred<string>();
      const calls = [flights.do('token', () => gate.promise), flights.do('token', () => gate.promise)];
      gate.reject(new Error('denied'));
      await Promise.allSettled(calls);
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });
});
