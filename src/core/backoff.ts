/**
 * Jittered exponential backoff ("full jitter" over an exponential ceiling, as in the AWS
 * architecture note that gRPC's connection backoff also follows). Each failing loop owns one.
 */

/** Backoff settings; all durations in milliseconds. */
export interface BackoffOptions {
  /** First delay ceiling. @defaultValue 100 */
  readonly initialMs?: number
  /** Largest delay ceiling. @defaultValue 30_000 */
  readonly maxMs?: number
  /** Growth per failure. @defaultValue 2 */
  readonly factor?: number
  /** Fraction of the delay that is randomised, 0..1. @defaultValue 0.5 */
  readonly jitter?: number
  /** Random source, injectable for tests. @defaultValue Math.random */
  readonly random?: () => number
}

/**
 * `ceilingMs` minus a random share of up to `jitter` of it, rounded: the one jitter formula of
 * every retry delay (a loop that retries at a fixed ceiling uses it directly).
 */
export function jitterDown(
  ceilingMs: number,
  jitter = 0.5,
  random: () => number = Math.random,
): number {
  return Math.round(ceilingMs * (1 - jitter * random()))
}

/** Stateful backoff: `next()` after a failure, `reset()` after a success. */
export class Backoff {
  readonly #initial: number
  readonly #max: number
  readonly #factor: number
  readonly #jitter: number
  readonly #random: () => number
  #attempt = 0

  constructor(options: BackoffOptions = {}) {
    this.#initial = options.initialMs ?? 100
    this.#max = options.maxMs ?? 30_000
    this.#factor = options.factor ?? 2
    this.#jitter = options.jitter ?? 0.5
    this.#random = options.random ?? Math.random
  }

  /** Failures since the last reset. */
  get attempt(): number {
    return this.#attempt
  }

  /** Delay before the next try, in ms: grows exponentially up to `maxMs`, jittered down. */
  next(): number {
    const ceiling = Math.min(this.#max, this.#initial * this.#factor ** this.#attempt)
    this.#attempt++
    return jitterDown(ceiling, this.#jitter, this.#random)
  }

  reset(): void {
    this.#attempt = 0
  }
}
