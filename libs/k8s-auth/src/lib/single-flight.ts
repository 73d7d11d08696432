/**
 * Collapses concurrent calls with the same key into one execution of their work, e.g. many requests arriving with
 * the same uncached token cost one TokenReview. Results are not kept: once the work settles, the next call runs it
 * again. Keys are compared as Map keys (SameValueZero), so objects match by identity.
 */
export class SingleFlight<K, V> {
  private readonly flights = new Map<K, Promise<V>>();

  /** Number of keys whose work is still running. */
  get inFlight(): number {
    return this.flights.size;
  }

  /** Joins the running work for `key`, or starts `work`. Every caller gets the same result or rejection. */
  do(key: K, work: () => Promise<V>): Promise<V> {
    const running = this.flights.get(key);
    if (running !== undefined) return running;

    // The async wrapper turns a synchronous throw from `work` into a rejection like any other.
    const flight: Promise<V> = (async () => work())().finally(() => {
      // Freed before any caller resumes, so a caller reacting to the result starts fresh work.
      if (this.flights.get(key) === flight) this.flights.delete(key);
    });
    this.flights.set(key, flight);
    return flight;
  }
}
