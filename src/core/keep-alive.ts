/**
 * Keeps the process alive while someone awaits wayfind, and only then.
 *
 * Background work (watches, heartbeats, pools, retries of the registry) is unref'd on purpose: a
 * process that is done must end even though wayfind still watches. But an operation a caller is
 * *awaiting* (a `resolve()` waiting for the first instance, a request waiting for one, a bounded
 * shutdown) must not let the process end underneath it: Node would find nothing ref'd, end the
 * event loop with the top-level `await` still pending, and exit with code 13 without a word.
 *
 * One ref'd handle for the whole process, ref'd while at least one hold is open and unref'd when
 * the last one is released. The handle is a real (never firing) interval on purpose, not the
 * injectable clock: a fake clock in tests controls when waits end, this only controls whether
 * the process may end meanwhile.
 */

/** Releases a hold. Idempotent. */
export type Release = () => void

/** A ref-counted keep-alive. Use {@link keepAlive} (one per process); this class is for tests. */
export class KeepAlive {
  #holds = 0
  #handle: NodeJS.Timeout | undefined

  /** Number of open holds. */
  get holds(): number {
    return this.#holds
  }

  /** True while the process is kept alive by this object. */
  get active(): boolean {
    return this.#handle?.hasRef() === true
  }

  /** Opens a hold; the process stays alive until every hold is released. */
  hold(): Release {
    if (this.#holds++ === 0) {
      // About 24.8 days: the longest interval Node accepts. It never fires in practice; it
      // exists only to be ref'd.
      this.#handle ??= setInterval(noop, 2 ** 31 - 1)
      this.#handle.ref()
    }
    let released = false
    return () => {
      if (released) return
      released = true
      if (--this.#holds === 0) this.#handle?.unref()
    }
  }

  /** Holds for as long as `promise` is pending and returns it (settled the same way). */
  while<T>(promise: Promise<T>): Promise<T> {
    const release = this.hold()
    return promise.finally(release)
  }
}

function noop(): void {}

/** The process-wide keep-alive. */
export const keepAlive = new KeepAlive()
