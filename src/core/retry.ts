/**
 * Retrying one operation with backoff until a time bound: how every registry makes its first
 * registration. A registry that is briefly unreachable while a service starts (a rolling restart
 * of etcd, a Consul agent that starts next to the app) should cost a short wait, not a crash, and
 * a registry that stays unreachable should fail after the bound the caller chose, never sooner and
 * never much later.
 */
import { abortReason, isAborted, sleep } from './abort.js'
import type { Backoff } from './backoff.js'

/** Default bound on a first registration, retries included (`RegisterOptions.timeoutMs`). */
export const DEFAULT_REGISTER_TIMEOUT_MS = 10_000

/** Settings of {@link retryWithin}. */
export interface RetryWithinOptions {
  /** Total time budget in ms, from the call; no attempt starts after it. */
  readonly timeoutMs: number
  /** Delays between attempts. */
  readonly backoff: Backoff
  /** Aborting stops at once with the signal's reason. */
  readonly signal: AbortSignal
  /** Whether a failure may succeed on a later attempt; anything else is thrown at once. */
  readonly retryable: (error: unknown) => boolean
  /** Called after each failed attempt that will be retried (debug output). */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void
  /** Monotonic clock in ms. @defaultValue performance.now */
  readonly now?: () => number
}

/** A failure that outlasted the budget: the last error, with the number of attempts made. */
export interface RetryExhausted {
  readonly error: unknown
  readonly attempts: number
  readonly elapsedMs: number
}

/**
 * Runs `attempt` until it resolves, a failure is not retryable, or the budget is spent. Resolves
 * with the value, or rejects with the non-retryable error, the signal's reason, or (budget spent)
 * whatever `exhausted` returns for the last retryable error.
 */
export async function retryWithin<T>(
  attempt: (remainingMs: number) => Promise<T>,
  options: RetryWithinOptions,
  exhausted: (failure: RetryExhausted) => unknown,
): Promise<T> {
  const now = options.now ?? (() => performance.now())
  const start = now()
  const deadline = start + options.timeoutMs
  // Someone awaits this: keep the process alive between attempts (our sleeps and sockets are
  // unref'd), for at most the budget.
  const hold = setInterval(() => undefined, 1 << 30)
  try {
    for (let attempts = 1; ; attempts++) {
      if (options.signal.aborted) throw abortReason(options.signal)
      try {
        return await attempt(Math.max(1, deadline - now()))
      } catch (err) {
        if (isAborted(options.signal)) throw abortReason(options.signal)
        if (!options.retryable(err)) throw err
        const left = deadline - now()
        if (left <= 0) throw exhausted({ error: err, attempts, elapsedMs: now() - start })
        // Never sleep past the deadline: the last attempt starts at the bound at the latest.
        const delay = Math.min(options.backoff.next(), left)
        options.onRetry?.(err, attempts, delay)
        await sleep(delay, options.signal)
      }
    }
  } finally {
    clearInterval(hold)
  }
}
