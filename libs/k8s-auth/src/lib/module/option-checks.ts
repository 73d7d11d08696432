/**
 * Checks of option values, run once as the module starts. Every refusal is an Error in one form, naming the option,
 * what it accepts and the value given: `K8sAuthModule option <name> must be <what>, got <value>`.
 */

/** Node fires a timer at once when its delay is above this (2^31 - 1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2_147_483_647;

export function invalidOption(name: string, allowed: string, value: unknown): Error {
  return new Error(`K8sAuthModule option ${name} must be ${allowed}, got ${shown(value)}`);
}

export function nonNegative(name: string, value: unknown): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  throw invalidOption(name, 'a non-negative number', value);
}

export function nonNegativeInteger(name: string, value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw invalidOption(name, 'a non-negative integer', value);
}

export function positiveInteger(name: string, value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw invalidOption(name, 'a positive integer', value);
}

/** An integer from `min` to `max`; `why` says where the bounds come from. */
export function integerBetween(name: string, value: unknown, min: number, max: number, why: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return value;
  throw invalidOption(name, `an integer from ${min} to ${max} (${why})`, value);
}

/** A delay that a timer waits for: above {@link MAX_TIMER_MS}, Node would fire it at once, over and over. */
export function timerMs(name: string, value: unknown, least: 'zero' | 'positive'): number {
  if (
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (least === 'zero' ? value >= 0 : value > 0) &&
    value <= MAX_TIMER_MS
  ) {
    return value;
  }
  const sign = least === 'zero' ? 'a non-negative' : 'a positive';
  throw invalidOption(name, `${sign} number of milliseconds, at most ${MAX_TIMER_MS} (Node's timer limit)`, value);
}

export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if ((allowed as readonly unknown[]).includes(value)) return value as T;
  throw invalidOption(name, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, value);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value as a message shows it: strings quoted (and escaped), lists in JSON, functions and objects by kind. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (typeof value !== 'object' || value === null) return String(value);
  if (Array.isArray(value)) {
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch {
      // circular: shown by kind
    }
    return json !== undefined && json.length <= 200 ? json : `a list of ${value.length}`;
  }
  const kind = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof kind === 'string' && kind !== 'Object' ? `a ${kind}` : 'an object';
}
