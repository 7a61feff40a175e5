/**
 * The registry contract: what Consul, etcd, the memory registry and any user registry implement.
 * Contract only, no code (grpc-js `resolver.ts` style).
 *
 * A provider serves many services and, optionally, registration of the running service. The
 * service cache (`core/service-cache.ts`) calls {@link RegistryProvider.watch} lazily on first
 * use of a service and aborts the signal when the service goes idle or the client closes.
 */
import type { WayfindError } from '../errors.js'
import type { Instance } from '../instance.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationSession,
} from '../registration/contract.js'

/** The full, current instance set of one service, as the registry answered it. */
export interface ServiceSnapshot {
  readonly service: string
  /** Usable instances only: critical ones and malformed entries are already left out. */
  readonly instances: readonly Instance[]
  /**
   * Registry position of this answer as a decimal string (Consul `X-Consul-Index`, etcd
   * revision; never a JS number, so 64-bit values stay exact). Informational: change detection
   * compares content, not revisions.
   */
  readonly revision: string
}

/**
 * Receives a watch's results.
 *
 * Contract for providers: never call a method synchronously from inside `watch()`; never call
 * one after the watch's signal aborted; call `onSnapshot` with the full set each time it may
 * have changed (emitting an unchanged set is allowed: the cache deduplicates by content).
 * A snapshot with zero instances must be *confirmed* (a successful answer that really lists
 * nothing, re-read when the registry is known to flap), because the cache applies it.
 */
export interface WatchListener {
  onSnapshot(snapshot: ServiceSnapshot): void
  /**
   * A problem the watch survived: the registry is unreachable (`retryable`, the provider keeps
   * retrying with backoff) or an entry was malformed and skipped (`MALFORMED_INSTANCE`).
   * The last good snapshot keeps serving either way.
   */
  onError(error: WayfindError): void
}

/** Per-watch options. */
export interface WatchOptions {
  /** Stops the watch: every loop, request and timer of it ends, and the listener goes quiet. */
  readonly signal: AbortSignal
}

/**
 * A service registry. Create one per client with its factory (`consul()`, `etcd()`,
 * `memoryRegistry()`); the client closes it.
 */
export interface RegistryProvider {
  /** `'consul' | 'etcd' | 'memory'`, or a user-defined name; used in errors and debug output. */
  readonly name: string
  /**
   * Starts watching `service`. Returns at once; results arrive through `listener`. The
   * provider retries failures with jittered exponential backoff **forever**, until
   * `options.signal` aborts; it never gives up silently.
   */
  watch(service: string, listener: WatchListener, options: WatchOptions): void
  /**
   * Registers the running service and keeps it registered (heartbeats, lease keepalive,
   * re-registration after the registry forgot it) until `context.signal` aborts. Resolves once
   * the first registration succeeded; rejects with `RegistrationError` (or `InvalidOptionError`
   * before any request when the registration cannot be expressed in this registry).
   * Absent when the registry is read-only.
   */
  register?(
    registration: NormalizedRegistration,
    context: RegisterContext,
  ): Promise<RegistrationSession>
  /**
   * Throws `InvalidOptionError` (option `service`) when this registry cannot hold a service
   * named `name`. The client calls it before it watches or registers a name, so such a name
   * fails at once everywhere (`resolve()`, `instances()`, the dispatcher, `register()`).
   * Optional: without it, any non-empty name is tried.
   */
  checkServiceName?(name: string): void
  /** Stops every watch and registration loop and releases connections. Idempotent. */
  close(): Promise<void>
}

/** Re-exported for providers' convenience. */
export type { WayfindError }
