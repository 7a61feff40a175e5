/**
 * Registration contracts: what users pass to `wf.register()`, the normalized form providers
 * receive, and the handle users get back. Contract only.
 */
import type { WayfindError } from '../errors.js'
import type { DrainableServer } from './server-drain.js'

/** An HTTP health check run by the registry's agent (Consul). */
export interface HttpCheck {
  /** URL the agent GETs; 2xx is passing, 429 warning, anything else critical (Consul rules). */
  readonly http: string
  /** How often the agent checks. @defaultValue 10_000 */
  readonly intervalMs?: number
  /** Per-check timeout. @defaultValue 5_000 */
  readonly timeoutMs?: number
  /** The agent removes the service after it stayed critical this long (Consul's minimum is 1 min). */
  readonly deregisterCriticalAfterMs?: number
}

/**
 * A TTL check: the SDK proves liveness by heartbeats every `ttlMs / 3`. On etcd this is the
 * lease TTL.
 */
export interface TtlCheck {
  /** @defaultValue 10_000 on etcd; required on Consul TTL checks */
  readonly ttlMs: number
  readonly deregisterCriticalAfterMs?: number
}

/** What users register. */
export interface Registration {
  /** Service name, e.g. `payments`. */
  readonly name: string
  /** Instance id, unique within the service. @defaultValue `${name}-${address}-${port}` */
  readonly id?: string
  /** Address other services connect to (host name or IP). */
  readonly address: string
  readonly port: number
  readonly tags?: readonly string[]
  readonly meta?: Readonly<Record<string, string>>
  /** Positive integer. @defaultValue 1 */
  readonly weight?: number
  readonly check?: HttpCheck | TtlCheck
}

/** A validated registration with defaults applied: what providers receive. */
export interface NormalizedRegistration {
  readonly name: string
  readonly id: string
  readonly address: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  readonly weight: number
  readonly check: NormalizedHttpCheck | NormalizedTtlCheck | undefined
}

export interface NormalizedHttpCheck {
  readonly kind: 'http'
  readonly http: string
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly deregisterCriticalAfterMs: number | undefined
}

export interface NormalizedTtlCheck {
  readonly kind: 'ttl'
  readonly ttlMs: number
  readonly deregisterCriticalAfterMs: number | undefined
}

/** State of a live registration. */
export type RegistrationState = 'registered' | 'degraded' | 'lost' | 'deregistered'

/**
 * Given by the client to `RegistryProvider.register()`. The provider reports state changes
 * through `onState`, never throws into it, and stops everything when `signal` aborts.
 */
export interface RegisterContext {
  /** Aborts when the registration ends (deregister, client close, shutdown). */
  readonly signal: AbortSignal
  /**
   * `registered` after each successful (re-)registration, `degraded` when heartbeats or
   * keepalives fail but the registry may still list us, `lost` when the registry forgot us
   * (the provider is re-registering, with backoff, forever) or, with a
   * `RegistrationConflictError`, when another owner took the id over (the provider stops).
   */
  onState(state: Exclude<RegistrationState, 'deregistered'>, error?: WayfindError): void
  /**
   * Budget of the first registration in ms ({@link RegisterOptions.timeoutMs}): the provider
   * retries transient failures (registry unreachable, 5xx, timeouts) with backoff until it
   * runs out, then rejects with a `retryable` error. Absent: 10_000.
   */
  readonly timeoutMs?: number
  /**
   * Take the instance id over even when another live owner holds it
   * ({@link RegisterOptions.replace}); otherwise that is a `RegistrationConflictError`.
   * Absent: false.
   */
  readonly replace?: boolean
}

/** Returned by `RegistryProvider.register()`. */
export interface RegistrationSession {
  /**
   * Removes the registration from the registry (Consul deregister, etcd lease revoke). Called
   * once, after the context's signal aborted. Must honour `signal` (the shutdown bound) and
   * treat "already gone" as success.
   */
  deregister(signal: AbortSignal): Promise<void>
}

/** Options of `wf.register()`. */
export interface RegisterOptions {
  /**
   * On SIGTERM/SIGINT, drain (see {@link RegistrationHandle.drain}), close the client, then let
   * the process end as it would have (the signal is raised again). @defaultValue false
   */
  readonly handleSignals?: boolean
  /** Deregister (bounded) when an uncaught exception or unhandled rejection ends the process. @defaultValue same as handleSignals */
  readonly handleCrashes?: boolean
  /** Bound on deregistration at shutdown. @defaultValue 3_000 */
  readonly shutdownTimeoutMs?: number
  /** Aborting it cancels a registration still in progress. */
  readonly signal?: AbortSignal
  /**
   * Bound on the first registration: while the registry is unreachable (or answers 5xx, or
   * times out) wayfind retries with backoff for this long, then rejects with a `retryable`
   * `RegistrationError`. @defaultValue 10_000
   */
  readonly timeoutMs?: number
  /**
   * Take over the instance id even when another live process holds it (a deliberate
   * replacement). Without it, registering an id that a live owner holds rejects with
   * `RegistrationConflictError`. @defaultValue false
   */
  readonly replace?: boolean
  /**
   * The server this instance serves on (node:http, node:https or node:http2). Draining stops it
   * accepting after `drainDelayMs` and lets its requests in flight finish; HTTP/1.1 responses
   * say `Connection: close` from the start of the drain.
   */
  readonly server?: DrainableServer
  /**
   * Called when the server would stop accepting (after `drainDelayMs`), for anything else to
   * stop: `() => fastify.close()`, a worker pool. Bounded by `drainTimeoutMs`.
   */
  readonly onDrain?: () => Promise<void>
  /**
   * Wait between deregistering and stopping the server, so callers see the removal first.
   * @defaultValue 5_000 with a `server` or `onDrain`, else 0
   */
  readonly drainDelayMs?: number
  /** Bound on the requests in flight (and `onDrain`) once the server stops accepting. @defaultValue 10_000 */
  readonly drainTimeoutMs?: number
}

/** Options of `handle.deregister()`. */
export interface DeregisterOptions {
  /** Bound on this deregistration. @defaultValue the registration's `shutdownTimeoutMs` */
  readonly timeoutMs?: number
  /** Aborting it stops waiting for the registry. */
  readonly signal?: AbortSignal
}

/** What `wf.register()` resolves with. */
export interface RegistrationHandle extends AsyncDisposable {
  readonly service: string
  readonly id: string
  readonly state: RegistrationState
  /** True once draining started (`drain()`, `wf.close()` or a handled signal). */
  readonly draining: boolean
  /**
   * Takes the instance out of service without losing a request: deregister → wait
   * `drainDelayMs` → stop the `server` and run `onDrain`, letting requests in flight finish
   * within `drainTimeoutMs`. Bounded and idempotent. `wf.close()` drains every registration.
   */
  drain(): Promise<void>
  /** Bounded and idempotent: every call returns the same promise. */
  deregister(options?: DeregisterOptions): Promise<void>
}
