/**
 * The drain options of `wf.register()`: their defaults and the parsed shape. The checks are
 * entries of the register schema (`options.ts`).
 *
 * Defaults, and why:
 * - `drainDelayMs` 5 s when there is something to drain (a `server` or an `onDrain` hook), else
 *   0. Deregistration is visible to a wayfind caller on Consul or etcd within milliseconds to a
 *   few seconds (a blocking query or watch wakes, a churn guard may hold a burst back), and to
 *   callers behind a load balancer or DNS only later. Until they see it they keep sending, so
 *   the server keeps accepting for this long. A worker with no server has nobody to wait for.
 * - `drainTimeoutMs` 10 s for the requests in flight (and `onDrain`) to finish.
 * - With `shutdownTimeoutMs` (3 s, the bound on deregistration) and 1 s to close the client,
 *   the whole sequence ends within 3 + 5 + 10 + 1 = 19 s: inside Kubernetes' default
 *   `terminationGracePeriodSeconds` of 30 s, with room for a `preStop` hook.
 */
import type { DrainableServer } from './server-drain.js'

/** Wait after deregistering before the server stops accepting, when there is something to drain. */
export const DEFAULT_DRAIN_DELAY_MS = 5_000
/** Bound on the requests in flight (and `onDrain`) once the server stops accepting. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000
/** Bound on closing the client (watches, leases, pools) after the drain, on a signal. */
export const CLOSE_BOUND_MS = 1_000

/** The drain options of `wf.register()`, checked (in `options.ts`) and with defaults applied. */
export interface NormalizedDrainOptions {
  readonly server: DrainableServer | undefined
  readonly onDrain: (() => Promise<void>) | undefined
  readonly drainDelayMs: number
  readonly drainTimeoutMs: number
}
