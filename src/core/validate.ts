/**
 * Option checks shared by every factory. Each throws `InvalidOptionError` naming the option, the
 * value received and the fix, at construction time.
 */
import { InvalidOptionError } from '../errors.js'

/** A duration in ms: a finite number ≥ `min` (default 1). */
export function checkDurationMs(
  option: string,
  value: unknown,
  { min = 1, max = 2 ** 31 - 1 } = {},
): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max)
    throw new InvalidOptionError(
      option,
      value,
      `Pass a number of milliseconds between ${min} and ${max} (durations end in "Ms": 5_000 is five seconds).`,
    )
  return value
}

/** A whole number within bounds. */
export function checkInteger(option: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw new InvalidOptionError(option, value, `Pass a whole number between ${min} and ${max}.`)
  return value
}

/** A non-empty string. */
export function checkNonEmptyString(
  option: string,
  value: unknown,
  fix = 'Pass a non-empty string.',
): string {
  if (typeof value !== 'string' || value.trim() === '')
    throw new InvalidOptionError(option, value, fix)
  return value
}

/** A plain object (or undefined → {}). */
export function checkObject(option: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidOptionError(option, value, 'Pass an object.')
  return value as Record<string, unknown>
}

/** Rejects keys that are not known, catching typos such as `timeout` for `timeoutMs`. */
export function checkKnownKeys(
  option: string,
  value: Record<string, unknown>,
  known: readonly string[],
): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue
    const guess = known.find(
      (k) =>
        k.toLowerCase().startsWith(key.toLowerCase()) ||
        key.toLowerCase().startsWith(k.toLowerCase()),
    )
    throw new InvalidOptionError(
      option === '' ? key : `${option}.${key}`,
      value[key],
      guess === undefined
        ? `This option does not exist; known options are: ${known.join(', ')}.`
        : `This option does not exist; did you mean "${guess}"?`,
    )
  }
}
