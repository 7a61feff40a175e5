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
  /** Schedules `fn` after `ms` (any finite length); the timer is unref'd. */
  setTimeout(fn: () => void, ms: number): TimerHandle
}

/** Longest delay a Node timer honours. */
const MAX_NODE_DELAY_MS = 2 ** 31 - 1

/** The real clock: `performance.now()` and unref'd Node timers. */
export const systemClock: Clock = Object.freeze({
  // The imported `performance` skips the global's lazy getter: a measurable share of a clock read.
  now: () => performance.now(),
  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (ms <= MAX_NODE_DELAY_MS) {
      const t = setTimeout(fn, ms)
      t.unref()
      return {
        clear: () => {
          clearTimeout(t)
        },
      }
    }
    // Node fires a delay above 2^31-1 ms at once (with a TimeoutOverflowWarning): wait in steps.
    let t: NodeJS.Timeout
    const arm = (left: number): void => {
      t = setTimeout(
        left > MAX_NODE_DELAY_MS
          ? () => {
              arm(left - MAX_NODE_DELAY_MS)
            }
          : fn,
        Math.min(left, MAX_NODE_DELAY_MS),
      )
      t.unref()
    }
    arm(ms)
    return {
      clear: () => {
        clearTimeout(t)
      },
    }
  },
})
