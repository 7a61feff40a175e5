/**
 * AbortSignal helpers. Every listener added here is removed when the operation settles, and
 * timeouts use unref'd timers we clear ourselves, never `AbortSignal.timeout()` composed with
 * `AbortSignal.any()` (on Node 20 a collected timeout signal never fires:
 * docs/design/README.md#node-20-pitfalls).
 */
import { systemClock, type Clock } from './clock.js'

/** Reason of an aborted signal as an Error (signal.reason, or an AbortError when it is not one). */
export function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason
  if (r instanceof Error) return r
  return new DOMException('This operation was aborted', 'AbortError')
}

/** Reads `aborted` through a call: TypeScript keeps an earlier check's narrowing across awaits. */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

/**
 * Calls `fn` once when `signal` aborts (at once if it already has). Returns a function that
 * removes the listener; call it when the operation settles.
 */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (signal === undefined) return noop
  if (signal.aborted) {
    fn()
    return noop
  }
  signal.addEventListener('abort', fn, { once: true })
  return () => {
    signal.removeEventListener('abort', fn)
  }
}

/**
 * A child controller that aborts when any parent signal aborts. `dispose()` detaches it from the
 * parents (call it when the child's work is over, or the parents keep a reference forever).
 */
export function linkedController(...parents: (AbortSignal | undefined)[]): {
  controller: AbortController
  dispose: () => void
} {
  const controller = new AbortController()
  const offs: (() => void)[] = []
  for (const p of parents) {
    if (p === undefined) continue
    offs.push(
      onAbort(p, () => {
        controller.abort(p.reason)
      }),
    )
    if (controller.signal.aborted) break
  }
  return {
    controller,
    dispose: () => {
      for (const off of offs) off()
    },
  }
}

/**
 * Resolves after `ms`, or rejects with the signal's reason when it aborts first. The timer is
 * unref'd: a pending sleep never keeps the process alive on its own.
 */
export function sleep(ms: number, signal?: AbortSignal, clock: Clock = systemClock): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(abortReason(signal))
      return
    }
    const timer = clock.setTimeout(() => {
      off()
      resolve()
    }, ms)
    const off = onAbort(signal, () => {
      timer.clear()
      reject(abortReason(signal as AbortSignal))
    })
  })
}

/**
 * Settles like `promise`, or rejects with the signal's reason as soon as `signal` aborts
 * (`promise` keeps running; its outcome is then ignored). The abort listener is removed when
 * either side settles.
 */
export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal))
  return new Promise<T>((resolve, reject) => {
    const off = onAbort(signal, () => {
      reject(abortReason(signal))
    })
    promise.then(
      (value) => {
        off()
        resolve(value)
      },
      (err: unknown) => {
        off()
        reject(err instanceof Error ? err : new Error(String(err)))
      },
    )
  })
}

function noop(): void {}
