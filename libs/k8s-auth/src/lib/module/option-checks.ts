/** Start-up checks of numeric options: each names the option and the value given, and throws RangeError. */

export function nonNegative(name: string, value: number): number {
  if (!(Number.isFinite(value) && value >= 0))
    throw new RangeError(`${name} must be a non-negative number, got ${value}`);
  return value;
}

export function nonNegativeInteger(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 0))
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  return value;
}

export function positive(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value > 0))
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}
