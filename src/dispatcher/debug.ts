/**
 * Dispatcher observability: `NODE_DEBUG=wayfind` and diagnostics_channel channels. Publishing
 * is guarded by `hasSubscribers`, so nothing is built when nobody listens.
 */
import diagnostics from 'node:diagnostics_channel'

/** `NODE_DEBUG=wayfind` logger (the shared one). */
export { debug } from '../core/debug.js'

/** `{ service, instance, attempt }` on every pick. */
export const pickChannel = diagnostics.channel('wayfind:pick')
/** `{ service, instance, attempt, reason, delayMs }` when a request is sent again. */
export const retryChannel = diagnostics.channel('wayfind:retry')
/** `{ service, instance, ejected, durationMs? }` on ejection and return. */
export const ejectChannel = diagnostics.channel('wayfind:eject')
