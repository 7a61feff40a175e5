/**
 * What the dispatcher sees of the service cache. Contract only.
 */
import type { DefaultLoadTracker } from '../balancer/load-tracker.js'
import type { Picker } from '../balancer/strategy.js'
import type { ChangeEvent } from '../events.js'
import type { Clock } from './clock.js'

/** Per-service picker access for the dispatcher, backed by the service cache. */
export interface ServiceDirectory {
  /**
   * The current picker of `service`. Synchronous. Starts the watch on first use and marks the
   * service as recently used (idle services are unwatched after a TTL). Returns `EMPTY_PICKER`
   * (a `queue` result) until the registry has answered with at least one instance.
   */
  picker(service: string): Picker
  /**
   * Resolves with the picker as soon as the service has at least one instance; rejects with
   * `ResolveTimeoutError` after `timeoutMs`, with `signal.reason` on abort, or `ClosedError`.
   * Event-driven: no polling.
   */
  waitForPicker(
    service: string,
    options: { readonly timeoutMs: number; readonly signal?: AbortSignal | undefined },
  ): Promise<Picker>
  /** Membership changes of every watched service (to drop pools of removed instances). */
  onChange(listener: (event: ChangeEvent) => void): () => void
  /** Shared per-instance load, keyed by `Instance.key`; the dispatcher writes it. */
  readonly load: DefaultLoadTracker
  readonly clock: Clock
  /** Default wait for a service with no instance yet (the client's `resolveTimeoutMs`). */
  readonly resolveTimeoutMs: number
}
