/**
 * The Consul registry: `consul(options)` returns a {@link RegistryProvider} that watches
 * services with blocking queries on the agent's `/v1/health/service/<name>` and registers the
 * running service with the agent. See docs/consul.md.
 */
import { setMaxListeners } from 'node:events'
import { linkedController } from '../../core/abort.js'
import { Closable } from '../../core/lifecycle.js'
import { InvalidOptionError } from '../../errors.js'
import type { NormalizedRegistration, RegisterContext, RegistrationSession } from '../../registration/registrar.js'
import type { RegistryProvider, WatchListener, WatchOptions } from '../provider.js'
import { ConsulHttp, type ConsulHttpStats } from './http.js'
import { resolveConsulOptions, type ConsulRegistryOptions, type ResolvedConsulOptions } from './options.js'
import { registerWithConsul } from './registrar.js'
import { SlotGate } from './slot-gate.js'
import { ConsulServiceWatch } from './watch.js'

/** Live counters of a {@link ConsulRegistry}, for tests, benchmarks and debugging. */
export interface ConsulRegistryStats extends ConsulHttpStats {
  /** Watches running now. */
  readonly watches: number
  /** Long polls in flight (each holds a connection over HTTP/1.1, a stream over HTTP/2). */
  readonly activePolls: number
  /** Watches queued for a connection because more services are watched than the budget allows. */
  readonly queuedPolls: number
  /** Concurrent long polls allowed by the connection budget. */
  readonly pollCapacity: number
}

/** The provider returned by {@link consul}. */
export class ConsulRegistry extends Closable implements RegistryProvider {
  readonly name = 'consul'
  readonly #options: ResolvedConsulOptions
  readonly #http: ConsulHttp
  readonly #gate: SlotGate
  #watches = 0

  constructor(options: ConsulRegistryOptions = {}) {
    super('consul registry')
    // Every watch listens on this signal; hundreds of watches are normal, not a leak.
    setMaxListeners(0, this.signal)
    this.#options = resolveConsulOptions(options)
    // Nothing connects here: the pools are created by the first request.
    this.#http = new ConsulHttp(this.#options)
    this.#gate = new SlotGate(this.#http.watchCapacity, this.#options.rotationMs)
    this.#http.onProtocol(() => { this.#gate.capacity = this.#http.watchCapacity })
  }

  /** The agent origin (never the token). */
  get url(): string {
    return `${this.#options.origin}${this.#options.basePath}`
  }

  get stats(): ConsulRegistryStats {
    return {
      ...this.#http.stats,
      watches: this.#watches,
      activePolls: this.#gate.active,
      queuedPolls: this.#gate.queued,
      pollCapacity: this.#gate.capacity,
    }
  }

  watch(service: string, listener: WatchListener, options: WatchOptions): void {
    this.assertOpen('watch')
    if (typeof service !== 'string' || service === '')
      throw new InvalidOptionError('service', service, 'Pass a non-empty service name.')
    const { controller, dispose } = linkedController(options.signal, this.signal)
    if (controller.signal.aborted) {
      dispose()
      return
    }
    this.#watches++
    this.#gate.join()
    controller.signal.addEventListener('abort', () => {
      this.#watches--
      this.#gate.leave()
      dispose()
    }, { once: true })
    new ConsulServiceWatch(service, listener, controller.signal, {
      http: this.#http,
      gate: this.#gate,
      options: this.#options,
    }).start()
  }

  register(registration: NormalizedRegistration, context: RegisterContext): Promise<RegistrationSession> {
    this.assertOpen('register')
    return registerWithConsul(registration, context, { http: this.#http, options: this.#options, signal: this.signal })
  }

  protected async onClose(): Promise<void> {
    // Every loop saw the abort already; destroying the pools ends any socket still open.
    await this.#http.close()
  }
}

/**
 * Creates a Consul registry provider. Options are validated here (`InvalidOptionError`);
 * connections open lazily, on the first watch or registration.
 *
 * @example
 * ```ts
 * const wf = createWayfind({ registry: consul({ url: 'https://consul.internal:8501', token }) })
 * const instances = await wf.resolve('payments')
 * ```
 */
export function consul(options?: ConsulRegistryOptions): ConsulRegistry {
  return new ConsulRegistry(options)
}
