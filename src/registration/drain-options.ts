/**
 * The drain options of `wf.register()` and their defaults, checked in one place.
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
import { checkDurationMs } from '../core/validate.js'
import { InvalidOptionError } from '../errors.js'
import type { DrainableServer } from './server-drain.js'

/** The keys of `RegisterOptions` handled here. */
export const DRAIN_OPTION_KEYS = ['server', 'onDrain', 'drainDelayMs', 'drainTimeoutMs'] as const

/** Wait after deregistering before the server stops accepting, when there is something to drain. */
export const DEFAULT_DRAIN_DELAY_MS = 5_000
/** Bound on the requests in flight (and `onDrain`) once the server stops accepting. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000
/** Bound on closing the client (watches, leases, pools) after the drain, on a signal. */
export const CLOSE_BOUND_MS = 1_000

/** Validated drain options. */
export interface NormalizedDrainOptions {
  readonly server: DrainableServer | undefined
  readonly onDrain: (() => Promise<void>) | undefined
  readonly drainDelayMs: number
  readonly drainTimeoutMs: number
}

/** Checks the drain options of `o` (the register options object). Throws `InvalidOptionError`. */
export function normalizeDrainOptions(o: Record<string, unknown>): NormalizedDrainOptions {
  const server = o.server
  if (
    server !== undefined &&
    (typeof server !== 'object' ||
      server === null ||
      typeof (server as { close?: unknown }).close !== 'function' ||
      typeof (server as { on?: unknown }).on !== 'function' ||
      typeof (server as { listen?: unknown }).listen !== 'function')
  )
    throw new InvalidOptionError(
      'options.server',
      server,
      'Pass the node:http, node:https or node:http2 server the service listens on (for fastify: its .server, or use onDrain: () => app.close()).',
    )
  const onDrain = o.onDrain
  if (onDrain !== undefined && typeof onDrain !== 'function')
    throw new InvalidOptionError(
      'options.onDrain',
      onDrain,
      'Pass an async function that stops the rest of your work, e.g. () => app.close().',
    )
  const drainDelayMs =
    o.drainDelayMs === undefined
      ? server === undefined && onDrain === undefined
        ? 0
        : DEFAULT_DRAIN_DELAY_MS
      : checkDurationMs('options.drainDelayMs', o.drainDelayMs, { min: 0 })
  const drainTimeoutMs =
    o.drainTimeoutMs === undefined
      ? DEFAULT_DRAIN_TIMEOUT_MS
      : checkDurationMs('options.drainTimeoutMs', o.drainTimeoutMs)
  return {
    server: server as DrainableServer | undefined,
    onDrain: onDrain as (() => Promise<void>) | undefined,
    drainDelayMs,
    drainTimeoutMs,
  }
}
