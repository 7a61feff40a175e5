/**
 * The etcd registry: `etcd({ hosts })` watches services under `<prefix><service>/` and keeps the
 * running service registered under a lease. See docs/design/etcd.md#why-not-etcd3s-watcher for
 * why the watch does its own revision bookkeeping instead of trusting etcd3's Watcher.
 */
import { linkedController } from '../../core/abort.js'
import { Closable } from '../../core/lifecycle.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationSession,
} from '../../registration/contract.js'
import type { RegistryProvider, WatchListener, WatchOptions } from '../provider.js'
import { assertServiceName, etcdNameRule } from '../service-name.js'
import { createEtcdClient, type WayfindEtcd3 } from './client.js'
import { parseEtcdOptions, type EtcdRegistryOptions, type ParsedEtcdOptions } from './options.js'
import { checkEtcdRegistration, registerInEtcd, type RegistrarHooks } from './registrar.js'
import { watchService } from './service-watch.js'

export type { EtcdAuth, EtcdCredentials, EtcdRegistryOptions } from './options.js'
export type { DecodedInstance, EtcdCodec, EtcdEntry } from './mapping.js'
export { defaultEtcdCodec } from './mapping.js'

/** Test and debug hooks. Not part of the public API. @internal */
export interface EtcdProviderHooks extends RegistrarHooks {
  /** A service's watch stream was (re)created and confirmed by etcd. */
  onWatching?(service: string): void
  /** A service's watch is re-listing (compaction, server cancel), with the reason. */
  onRelist?(service: string, why: string): void
}

/**
 * Creates an etcd registry provider. Validates `options` (throws `InvalidOptionError`) and does
 * nothing else: the etcd3 client is created on the first watch or registration.
 *
 * @example
 * ```ts
 * const wf = createWayfind({ registry: etcd({ hosts: ['http://127.0.0.1:2379'] }) })
 * await wf.register({ name: 'payments', address: '10.0.0.7', port: 8080, check: { ttlMs: 10_000 } })
 * ```
 */
export function etcd(options: EtcdRegistryOptions): RegistryProvider {
  return new EtcdProvider(parseEtcdOptions(options))
}

/** @internal exported for tests (hooks). Users call {@link etcd}. */
export class EtcdProvider extends Closable implements RegistryProvider {
  readonly name = 'etcd'
  readonly #options: ParsedEtcdOptions
  readonly #hooks: EtcdProviderHooks
  #client: WayfindEtcd3 | undefined
  readonly #loops = new Set<Promise<void>>()
  readonly #watches = new Set<AbortController>()

  constructor(options: ParsedEtcdOptions, hooks: EtcdProviderHooks = {}) {
    super('etcd registry')
    this.#options = options
    this.#hooks = hooks
  }

  /** Builds a provider with test hooks. @internal */
  static withHooks(options: EtcdRegistryOptions, hooks: EtcdProviderHooks): EtcdProvider {
    return new EtcdProvider(parseEtcdOptions(options), hooks)
  }

  #etcd(): WayfindEtcd3 {
    this.#client ??= createEtcdClient(this.#options)
    return this.#client
  }

  /** {@inheritDoc RegistryProvider.checkServiceName} */
  checkServiceName(name: string): void {
    assertServiceName('etcd', name, etcdNameRule)
  }

  watch(service: string, listener: WatchListener, options: WatchOptions): void {
    this.assertOpen('watch')
    this.checkServiceName(service)
    // Linked to the caller's signal only: close() aborts each watch itself, so the provider's
    // own signal does not collect one listener per watched service (1,000 services → 1,000).
    const { controller, dispose: unlink } = linkedController(options.signal)
    if (controller.signal.aborted) {
      unlink()
      return
    }
    this.#watches.add(controller)
    const dispose = (): void => {
      unlink()
      this.#watches.delete(controller)
    }
    const client = this.#etcd()
    const hooks = this.#hooks
    // Started on the next tick: the listener is never called synchronously from watch().
    const loop = new Promise<void>((resolve) => {
      setImmediate(resolve)
    })
      .then(() =>
        watchService(client, this.#options, service, listener, controller.signal, {
          ...(hooks.onWatching === undefined
            ? {}
            : {
                onWatching: () => {
                  hooks.onWatching?.(service)
                },
              }),
          ...(hooks.onRelist === undefined
            ? {}
            : {
                onRelist: (why: string) => {
                  hooks.onRelist?.(service, why)
                },
              }),
        }),
      )
      .finally(() => {
        dispose()
        this.#loops.delete(loop)
      })
    this.#loops.add(loop)
  }

  async register(
    registration: NormalizedRegistration,
    context: RegisterContext,
  ): Promise<RegistrationSession> {
    this.assertOpen('register')
    // Reject what etcd cannot express before any request.
    checkEtcdRegistration(registration, this.#options)
    return registerInEtcd(
      this.#etcd(),
      this.#options,
      registration,
      context,
      this.signal,
      this.#hooks,
    )
  }

  protected async onClose(): Promise<void> {
    for (const c of this.#watches) c.abort(this.signal.reason)
    // Loops end on the aborted signal (streams cancelled, sleeps rejected); unary calls in
    // flight are bounded by requestTimeoutMs, and closing the client fails them at once.
    this.#client?.close()
    await Promise.allSettled([...this.#loops])
  }
}
