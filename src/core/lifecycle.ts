/**
 * The lifecycle, written once (undici's DispatcherBase idea): every long-lived object owns one
 * AbortController, closes idempotently, rejects calls after close with ClosedError, and supports
 * `await using`.
 */
import { ClosedError } from '../errors.js'

/**
 * Base for long-lived objects. Subclasses put their teardown in `onClose()`; `close()` runs it
 * once and every later call returns the same promise. `signal` aborts when closing starts, so
 * every loop, timer and socket tied to it stops.
 */
export abstract class Closable implements AsyncDisposable {
  readonly #controller = new AbortController()
  readonly #what: string
  #closing: Promise<void> | undefined

  protected constructor(what: string) {
    this.#what = what
  }

  /** Aborts when `close()` starts. Tie every loop, timer and socket of this object to it. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closing !== undefined
  }

  /** Graceful, idempotent, bounded teardown. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#controller.abort(new ClosedError(`${this.#what}.close()`))
      await this.onClose()
    })()
    return this.#closing
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  /** Throws ClosedError naming `method` when the object is closed. */
  protected assertOpen(method: string): void {
    if (this.closed) throw new ClosedError(`${this.#what}.${method}()`)
  }

  /** Teardown; runs once, after `signal` aborted. Must not throw for expected conditions. */
  protected abstract onClose(): Promise<void>
}
