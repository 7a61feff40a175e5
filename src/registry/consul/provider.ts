/**
 * The Consul registry: `consul(options)` returns a {@link RegistryProvider} that watches
 * services with blocking queries on the agent's `/v1/health/service/<name>` and registers the
 * running service with the agent. See docs/consul.md.
 */
import { onAbort } from '../../core/abort.js'
import { Closable } from '../../core/lifecycle.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationSession,
} from '../../registration/contract.js'
import type { RegistryProvider, WatchListener, WatchOptions } from '../provider.js'
import { assertServiceName, consulNameRule } from '../service-name.js'
import { ConsulHttp, type ConsulHttpStats } from './http.js'
import {
  parseConsulOptions,
  type ConsulRegistryOptions,
  type ParsedConsulOptions,
} from './options.js'
import { registerWithConsul } from './registrar.js'
import { SlotGate } from './slot-gate.js'
import { IndexResets } from './index-resets.js'
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
  readonly #options: ParsedConsulOptions
  readonly #http: ConsulHttp
  readonly #gate: SlotGate
  /** One agent, one index: a regression seen by one watch resets the others (index-resets.ts). */
  readonly #resets = new IndexResets()
  /**
   * One controller per running watch, aborted by close(). The registry's own signal gets no
   * listener per watch: a thousand watches would be a thousand listeners on one signal.
   */
  readonly #watchControllers = new Set<AbortController>()
  /**
   * Watches by the caller's signal: one listener per distinct signal, however many services it
   * watches (a caller may stop all its watches with one signal; Node warns past 10 listeners).
   */
  readonly #bySignal = new Map<
    AbortSignal,
    { readonly watches: Set<AbortController>; readonly off: () => void }
  >()

  constructor(options: ConsulRegistryOptions = {}) {
    super('consul registry')
    this.#options = parseConsulOptions(options)
    // Nothing connects here: the pools are created by the first request.
    this.#http = new ConsulHttp(this.#options)
    this.#gate = new SlotGate(this.#http.watchCapacity, this.#options.rotationMs)
    this.#http.onProtocol(() => {
      this.#gate.capacity = this.#http.watchCapacity
    })
  }

  /** The agent origin (never the token). */
  get url(): string {
    return `${this.#options.origin}${this.#options.basePath}`
  }

  get stats(): ConsulRegistryStats {
    return {
      ...this.#http.stats,
      watches: this.#watchControllers.size,
      activePolls: this.#gate.active,
      queuedPolls: this.#gate.queued,
      pollCapacity: this.#gate.capacity,
    }
  }

  watch(service: string, listener: WatchListener, options: WatchOptions): void {
    this.assertOpen('watch')
    this.checkServiceName(service)
    const { signal } = options
    if (signal.aborted) return
    const controller = new AbortController()
    let link = this.#bySignal.get(signal)
    if (link === undefined) {
      const watches = new Set<AbortController>()
      const off = onAbort(signal, () => {
        this.#bySignal.delete(signal)
        for (const c of [...watches]) c.abort(signal.reason)
      })
      link = { watches, off }
      this.#bySignal.set(signal, link)
    }
    const { watches, off } = link
    watches.add(controller)
    this.#watchControllers.add(controller)
    this.#gate.join()
    const watch = new ConsulServiceWatch(service, listener, controller.signal, {
      http: this.#http,
      gate: this.#gate,
      options: this.#options,
      resets: this.#resets,
    })
    const leaveResets = this.#resets.join(watch)
    controller.signal.addEventListener(
      'abort',
      () => {
        this.#watchControllers.delete(controller)
        this.#gate.leave()
        leaveResets()
        watches.delete(controller)
        // The last watch of this signal gone: its listener goes too.
        if (watches.size === 0 && this.#bySignal.get(signal)?.watches === watches) {
          this.#bySignal.delete(signal)
          off()
        }
      },
      { once: true },
    )
    watch.start()
  }

  /** {@inheritDoc RegistryProvider.checkServiceName} */
  checkServiceName(name: string): void {
    assertServiceName('Consul', name, consulNameRule)
  }

  register(
    registration: NormalizedRegistration,
    context: RegisterContext,
  ): Promise<RegistrationSession> {
    this.assertOpen('register')
    return registerWithConsul(registration, context, {
      http: this.#http,
      options: this.#options,
      signal: this.signal,
    })
  }

  protected async onClose(): Promise<void> {
    const reason = this.signal.reason as unknown
    for (const c of [...this.#watchControllers]) c.abort(reason)
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
