import { performance } from 'node:perf_hooks'

/**
 * Time, injectable so that TTLs, backoff and EWMA decay can be tested with a fake clock.
 */

/** A cancellable timer handle. */
export interface TimerHandle {
  /** Cancels the timer; harmless after it fired. */
  clear(): void
}

/** Source of time and timers. Every timer it creates must not keep the process alive. */
export interface Clock {
  /** Monotonic milliseconds (like `performance.now()`). */
  now(): number
  /** Schedules `fn` after `ms`; the timer is unref'd. */
  setTimeout(fn: () => void, ms: number): TimerHandle
}

/** The real clock: `performance.now()` and unref'd Node timers. */
export const systemClock: Clock = Object.freeze({
  // The imported `performance` skips the global's lazy getter: a measurable share of a clock read.
  now: () => performance.now(),
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t = setTimeout(fn, ms)
    t.unref()
    return {
      clear: () => {
        clearTimeout(t)
      },
    }
  },
})
