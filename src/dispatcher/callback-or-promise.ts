/**
 * undici's `Dispatcher.close()` and `destroy()` take an optional callback and return a promise
 * only without one (undici's DispatcherBase does the same). Both of our dispatchers, the
 * wayfind dispatcher and an instance's connection set, answer both forms through these.
 */

/** Returns `p`, or, with a callback, calls it when `p` settles and returns undefined. */
export function callbackOrPromise(
  p: Promise<void>,
  callback: (() => void) | undefined,
): Promise<void> | undefined {
  if (callback === undefined) return p
  p.then(callback, callback)
  return undefined
}

/** Splits `destroy(err?, callback?)` / `destroy(callback)` into its error and callback. */
export function destroyArgs(
  a: Error | null | (() => void) | undefined,
  b: (() => void) | undefined,
): { readonly err: Error | null; readonly callback: (() => void) | undefined } {
  return typeof a === 'function' ? { err: null, callback: a } : { err: a ?? null, callback: b }
}
