/**
 * The client: one registry provider, one service cache, one dispatcher, one event hub.
 */
import type { Dispatcher } from 'undici'
import { DefaultLoadTracker } from './balancer/load-tracker.js'
import { Closable } from './core/lifecycle.js'
import {
  parseResolveOptions,
  parseServiceName,
  type ResolveOptions,
} from './core/resolve-options.js'
import { ServiceCache } from './core/service-cache.js'
import { WayfindDispatcher, type ServiceStats } from './dispatcher/dispatcher.js'
import { createEvents, type WayfindEventsApi } from './events.js'
import type { Instance } from './instance.js'
import { parseWayfindOptions, type WayfindOptions } from './options.js'
import { memoryRegistry } from './registry/memory.js'
import type { RegistryProvider } from './registry/provider.js'
import type { RegisterOptions, Registration, RegistrationHandle } from './registration/contract.js'
import { startRegistration, type DrainHost } from './registration/registration.js'
import {
  createHealthHandler,
  type HealthHandler,
  type HealthHandlerOptions,
  type HealthReport,
} from './registration/health-handler.js'
import { keepAlive } from './core/keep-alive.js'

/**
 * A wayfind client. Create it with {@link createWayfind}; close it with `close()` or
 * `await using`.
 */
export interface Wayfind extends AsyncDisposable {
  /** Typed events: `change`, `error`, registration states, `eject`/`uneject`. */
  readonly events: WayfindEventsApi
  /**
   * An undici dispatcher that routes `http://<service>/...` to a picked instance:
   * `fetch('http://payments/charge', { dispatcher: wf.dispatcher })`. Other origins pass through
   * to a plain undici Agent.
   */
  readonly dispatcher: Dispatcher
  /** The registry this client reads from and registers into. */
  readonly registry: RegistryProvider
  /** True once `close()` was called. */
  readonly closed: boolean
  /**
   * Waits until `service` has at least one instance and returns the current set. Rejects with
   * `ResolveTimeoutError` (`WAYFIND_ERR_RESOLVE_TIMEOUT`) after `timeoutMs`, with
   * `signal.reason` when `signal` aborts, and with `ClosedError` after close.
   */
  resolve(service: string, options?: ResolveOptions): Promise<readonly Instance[]>
  /** The current set, synchronously; `[]` when unknown yet (and starts watching it). */
  instances(service: string): readonly Instance[]
  /**
   * Registers the running service and keeps it registered until `deregister()`, `close()`, or
   * (with `handleSignals`) SIGTERM/SIGINT.
   *
   * @example
   * ```ts
   * const reg = await wf.register(
   *   { name: 'payments', id: 'payments-1', address: '10.0.0.7', port: 8080,
   *     check: { http: 'http://10.0.0.7:8080/health', intervalMs: 10_000 } },
   *   { handleSignals: true },
   * )
   * ```
   */
  register(registration: Registration, options?: RegisterOptions): Promise<RegistrationHandle>
  /** The dispatcher as an interceptor, for `agent.compose(wf.interceptor())`. */
  interceptor(): Dispatcher.DispatcherComposeInterceptor
  /** Per-instance load and health of a service, as the dispatcher sees it. */
  stats(service: string): ServiceStats
  /**
   * UP while the client is open and no drain has started, DOWN from the moment one starts;
   * with each registration's state.
   */
  health(): HealthReport
  /**
   * A health endpoint for your own server, answering {@link Wayfind.health} (200 UP / 503
   * DOWN, JSON). `(req, res, next?) => void`: node:http
   * (`createServer((req, res) => { if (req.url === '/health') return health(req, res) ... })`),
   * express (`app.get('/health', wf.healthHandler())`), fastify
   * (`(req, reply) => { reply.hijack(); health(req.raw, reply.raw) }`).
   */
  healthHandler(options?: HealthHandlerOptions): HealthHandler
  /**
   * Drains every registration (see `RegistrationHandle.drain()`), then stops every watch,
   * closes pools and the registry. Bounded and idempotent; keeps the process alive until done.
   */
  close(): Promise<void>
}

/**
 * Creates a client. Validates options synchronously (throws `InvalidOptionError`) and does
 * nothing else: watches start on first use.
 *
 * @example
 * ```ts
 * import { createWayfind, consul } from 'wayfind'
 * import { fetch } from 'undici'
 *
 * // One client for the life of the process: close it (or let handleSignals drain it) at the end,
 * // not with `await using` at the top of a module, which closes it when the module has run.
 * const wf = createWayfind({ registry: consul({ url: 'http://127.0.0.1:8500' }) })
 * const res = await fetch('http://payments/charge', { method: 'POST', dispatcher: wf.dispatcher })
 * ```
 */
export function createWayfind(options?: WayfindOptions): Wayfind {
  return new WayfindClient(options)
}

class WayfindClient extends Closable implements Wayfind {
  readonly registry: RegistryProvider
  readonly dispatcher: WayfindDispatcher
  readonly #hub = createEvents()
  readonly #cache: ServiceCache
  readonly #registrations = new Set<RegistrationHandle>()
  /** Drains in progress (close() waits for them; health() still lists them). */
  readonly #drains = new Map<RegistrationHandle, Promise<void>>()
  #draining = false
  readonly #drainHost: DrainHost = {
    drainStarted: (handle, drain) => {
      this.#draining = true
      this.#drains.set(handle, drain)
      void drain.finally(() => this.#drains.delete(handle))
    },
    close: () => this.close(),
  }

  constructor(input: WayfindOptions | undefined) {
    super('wayfind')
    const options = parseWayfindOptions(input)
    const clock = options.clock
    this.registry = options.registry ?? memoryRegistry({ clock })
    this.#cache = new ServiceCache({
      provider: this.registry,
      strategy: options.strategy,
      load: new DefaultLoadTracker({ clock }),
      hub: this.#hub,
      clock,
      random: options.random,
      idleTtlMs: options.idleTtlMs,
      resolveTimeoutMs: options.resolveTimeoutMs,
    })
    this.dispatcher = new WayfindDispatcher(this.#cache, options.dispatcher, this.#hub)
  }

  get events(): WayfindEventsApi {
    return this.#hub.api
  }

  resolve(service: string, options?: ResolveOptions): Promise<readonly Instance[]> {
    // Asynchronous errors only: a promise-returning method never throws synchronously.
    return Promise.resolve().then(() => {
      this.assertOpen('resolve')
      parseServiceName(service, 'resolve()')
      return this.#cache.resolve(service, parseResolveOptions(options))
    })
  }

  instances(service: string): readonly Instance[] {
    this.assertOpen('instances')
    parseServiceName(service, 'instances()')
    return this.#cache.instances(service)
  }

  async register(
    registration: Registration,
    options?: RegisterOptions,
  ): Promise<RegistrationHandle> {
    this.assertOpen('register')
    // Awaited: a registration still retrying against a slow registry keeps the process alive.
    return keepAlive.while(
      startRegistration(
        this.registry,
        registration,
        options,
        this.#hub,
        (handle) => {
          this.#registrations.add(handle)
          return () => {
            this.#registrations.delete(handle)
          }
        },
        this.#drainHost,
      ),
    )
  }

  health(): HealthReport {
    const down = this.#draining || this.closed
    return {
      status: down ? 'DOWN' : 'UP',
      draining: down,
      registrations: [...new Set([...this.#registrations, ...this.#drains.keys()])].map((r) => ({
        service: r.service,
        id: r.id,
        state: r.state,
      })),
    }
  }

  healthHandler(options?: HealthHandlerOptions): HealthHandler {
    return createHealthHandler(() => this.health(), options)
  }

  override close(): Promise<void> {
    // Awaited shutdown keeps the process alive until it is done (it is bounded).
    return keepAlive.while(super.close())
  }

  interceptor(): Dispatcher.DispatcherComposeInterceptor {
    this.assertOpen('interceptor')
    return this.dispatcher.interceptor()
  }

  stats(service: string): ServiceStats {
    return this.dispatcher.stats(service)
  }

  protected async onClose(): Promise<void> {
    // Drain first (deregister, wait, stop the servers), while the registry connection and the
    // dispatcher are still open: handlers finishing their requests may still call out. Each
    // step is bounded.
    this.#draining = true
    await Promise.allSettled([
      ...[...this.#registrations].map((r) => r.drain()),
      ...this.#drains.values(),
    ])
    await this.dispatcher.close().catch(() => undefined)
    await this.#cache.close()
    await this.registry.close().catch(() => undefined)
    this.#hub.clear()
  }
}
