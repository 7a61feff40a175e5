/**
 * The one policy for a listener that throws (a user's event handler, a registration state
 * callback, a watch listener, an internal cache listener): the error never reaches the loop that
 * called it (a watch or heartbeat keeps running, the other listeners still run) and it is not
 * swallowed either: it becomes a process warning with code `WAYFIND_LISTENER_ERROR`
 * (docs/errors.md), which Node prints by default and `process.on('warning')` can route.
 */
import { errorMessage } from '../errors.js'

/** The `code` of the process warning (docs/errors.md). */
export const LISTENER_ERROR_CODE = 'WAYFIND_LISTENER_ERROR'

/** Reports that `what` (e.g. `a "change" listener`) threw `err`, as a process warning. */
export function reportListenerError(what: string, err: unknown): void {
  process.emitWarning(`${what} threw: ${errorMessage(err)}`, {
    code: LISTENER_ERROR_CODE,
    detail: err instanceof Error ? (err.stack ?? '') : '',
  })
}

/** Calls `fn`; a throw is reported by {@link reportListenerError} instead of propagating. */
export function callListener(what: string, fn: () => void): void {
  try {
    fn()
  } catch (err) {
    reportListenerError(what, err)
  }
}
