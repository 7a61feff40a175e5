/**
 * The service cache (grpc-js `ResolvingLoadBalancer`'s job): per service, one lazy registry
 * watch, the last good instance set, the current picker, and the `resolve()` waiters.
 *
 * Rules kept here (docs/design/README.md#service-cache):
 * - a watch starts on first use and stops when the service has been idle past `idleTtlMs`
 *   (lru-cache holds the idle set);
 * - a registry error never replaces the last good set; it becomes an `error` event;
 * - a `change` event fires only when the content really changed (diff by `Instance.key`);
 * - waiters are woken by snapshots, never by polling;
 * - listener exceptions never reach the watch (events.ts isolates them).
 */
import { LRUCache } from 'lru-cache'
import type { DefaultLoadTracker } from '../balancer/load-tracker.js'
import { EMPTY_PICKER, type Picker, type Strategy } from '../balancer/strategy.js'
import {
  ClosedError,
  ErrorCode,
  MalformedInstanceError,
  ResolveTimeoutError,
  WayfindError,
  type WayfindError as WayfindErrorType,
} from '../errors.js'
import type { ChangeEvent, EventHub } from '../events.js'
import { diffInstances, sortedByKey, type Instance } from '../instance.js'
import type { RegistryProvider, ServiceSnapshot } from '../registry/provider.js'
import { abortReason, onAbort } from './abort.js'
import type { Clock, TimerHandle } from './clock.js'
import type { ServiceDirectory } from './directory.js'
import { keepAlive } from './keep-alive.js'
import { Closable } from './lifecycle.js'
import { callListener } from './listener-errors.js'

/** Construction parameters (already validated by the client). */
export interface ServiceCacheOptions {
  readonly provider: RegistryProvider
  readonly strategy: Strategy
  readonly load: DefaultLoadTracker
  readonly hub: EventHub
  readonly clock: Clock
  readonly random: () => number
  readonly idleTtlMs: number
  readonly resolveTimeoutMs: number
}

const NO_TIMER: TimerHandle = Object.freeze({ clear: () => {} })

interface Waiter {
  resolve(picker: Picker): void
  reject(error: Error): void
}

/** One watched service. */
class ServiceEntry {
  readonly service: string
  readonly controller = new AbortController()
  instances: readonly Instance[] = []
  /** The last picker built. Out of date while {@link pickerStale} (see ServiceCache.#pickerOf). */
  picker: Picker = EMPTY_PICKER
  /** `instances` changed since `picker` was built. */
  pickerStale = false
  /** Last error seen since the last good snapshot: the `cause` of a resolve timeout. */
  lastError: WayfindErrorType | undefined
  readonly waiters = new Set<Waiter>()

  constructor(service: string) {
    this.service = service
  }
}

/**
 * Owns every service entry of one client. Implements {@link ServiceDirectory} for the
 * dispatcher.
 */
export class ServiceCache extends Closable implements ServiceDirectory {
  readonly load: DefaultLoadTracker
  readonly clock: Clock
  readonly resolveTimeoutMs: number
  readonly #provider: RegistryProvider
  readonly #strategy: Strategy
  readonly #hub: EventHub
  readonly #random: () => number
  readonly #entries: LRUCache<string, ServiceEntry>
  readonly #changeListeners = new Set<(event: ChangeEvent) => void>()

  constructor(options: ServiceCacheOptions) {
    super('ServiceCache')
    this.#provider = options.provider
    this.#strategy = options.strategy
    this.#hub = options.hub
    this.#random = options.random
    this.load = options.load
    this.clock = options.clock
    this.resolveTimeoutMs = options.resolveTimeoutMs
    this.#entries = new LRUCache<string, ServiceEntry>({
      ttl: options.idleTtlMs,
      ttlAutopurge: true,
      updateAgeOnGet: true,
      // No cached "now": the injected clock is cheap and a cached value defeats a fake clock.
      ttlResolution: 0,
      // Time comes from the injected clock so idle eviction is testable with a fake one.
      perf: { now: () => this.clock.now() },
      dispose: (entry, service, reason) => {
        if (reason === 'expire') this.#expired(entry, service)
        else entry.controller.abort()
      },
    })
  }

  /** Current instances of `service`; `[]` when unknown. Starts the watch. */
  instances(service: string): readonly Instance[] {
    this.assertOpen('instances')
    return this.#entry(service).instances
  }

  /** {@inheritDoc ServiceDirectory.picker} */
  picker(service: string): Picker {
    if (this.closed) return EMPTY_PICKER
    return this.#pickerOf(this.#entry(service))
  }

  /** Waits until `service` has ≥ 1 instance. `options` are checked by the client. */
  async resolve(
    service: string,
    options: {
      readonly timeoutMs?: number | undefined
      readonly signal?: AbortSignal | undefined
    } = {},
  ): Promise<readonly Instance[]> {
    const picker = await this.waitForPicker(service, {
      timeoutMs: options.timeoutMs ?? this.resolveTimeoutMs,
      signal: options.signal,
    })
    return picker.instances
  }

  /** {@inheritDoc ServiceDirectory.waitForPicker} */
  waitForPicker(
    service: string,
    options: { readonly timeoutMs: number; readonly signal?: AbortSignal | undefined },
  ): Promise<Picker> {
    if (this.closed) return Promise.reject(new ClosedError('resolve'))
    const { signal, timeoutMs } = options
    if (signal?.aborted === true) return Promise.reject(abortReason(signal))
    let entry: ServiceEntry
    try {
      entry = this.#entry(service)
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
    if (entry.instances.length > 0) {
      try {
        return Promise.resolve(this.#pickerOf(entry))
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)))
      }
    }

    return new Promise<Picker>((resolve, reject) => {
      let offAbort = (): void => {}
      // Someone awaits this (resolve() or a request waiting for its first instance): the
      // process must not end before it settles, although the watch and the timer are unref'd.
      const release = keepAlive.hold()
      const settle = (): void => {
        entry.waiters.delete(waiter)
        timer.clear()
        offAbort()
        release()
      }
      const waiter: Waiter = {
        resolve: (picker) => {
          settle()
          resolve(picker)
        },
        reject: (error) => {
          settle()
          reject(error)
        },
      }
      entry.waiters.add(waiter)
      // Infinity: wait for the first instance, the signal or close(), with no timer at all.
      const timer: TimerHandle =
        timeoutMs === Number.POSITIVE_INFINITY
          ? NO_TIMER
          : this.clock.setTimeout(() => {
              waiter.reject(
                new ResolveTimeoutError(
                  service,
                  timeoutMs,
                  entry.lastError === undefined ? {} : { cause: entry.lastError },
                ),
              )
            }, timeoutMs)
      offAbort = onAbort(signal, () => {
        waiter.reject(abortReason(signal as AbortSignal))
      })
    })
  }

  /** {@inheritDoc ServiceDirectory.onChange} */
  onChange(listener: (event: ChangeEvent) => void): () => void {
    this.#changeListeners.add(listener)
    return () => {
      this.#changeListeners.delete(listener)
    }
  }

  /** Services currently watched (most recently used first). */
  services(): string[] {
    return [...this.#entries.keys()]
  }

  /** Unwatches services idle past the TTL now (lru-cache also does it on its own timers). */
  purgeIdle(): void {
    this.#entries.purgeStale()
  }

  protected async onClose(): Promise<void> {
    const entries = [...this.#entries.values()]
    this.#entries.clear() // dispose (reason 'delete') aborts every watch
    const closed = new ClosedError('resolve')
    for (const entry of entries) for (const w of [...entry.waiters]) w.reject(closed)
    this.#changeListeners.clear()
    await Promise.resolve()
  }

  #entry(service: string): ServiceEntry {
    let entry = this.#entries.get(service)
    if (entry === undefined) {
      // A name the registry cannot hold fails here, at once, for resolve(), instances() and the
      // dispatcher alike (only new names are checked: known ones cost nothing per request).
      this.#provider.checkServiceName?.(service)
      entry = new ServiceEntry(service)
      this.#entries.set(service, entry)
      this.#startWatch(entry)
    }
    return entry
  }

  #startWatch(entry: ServiceEntry): void {
    const { signal } = entry.controller
    try {
      this.#provider.watch(
        entry.service,
        {
          onSnapshot: (snapshot) => {
            if (!signal.aborted) this.#apply(entry, snapshot)
          },
          onError: (error) => {
            if (!signal.aborted) this.#error(entry, error)
          },
        },
        { signal },
      )
    } catch (err) {
      // A provider that throws synchronously broke its contract; keep the entry (it will
      // serve []) and say why, rather than throwing from a synchronous instances() call.
      const error =
        err instanceof WayfindError
          ? err
          : new WayfindError(
              ErrorCode.REGISTRY_UNAVAILABLE,
              `${this.#provider.name}.watch() threw`,
              {
                cause: err,
                retryable: false,
              },
            )
      queueMicrotask(() => {
        this.#error(entry, error)
      })
    }
  }

  #apply(entry: ServiceEntry, snapshot: ServiceSnapshot): void {
    const instances = uniqueByKey(entry, snapshot, (e) => {
      this.#error(entry, e)
    })
    const diff = diffInstances(entry.instances, instances)
    entry.lastError = undefined
    if (diff.added.length === 0 && diff.removed.length === 0 && diff.updated.length === 0) return

    entry.instances = instances
    // The picker is built on the first pick after the change, not here: the event does not
    // wait for it, and changes that no request sees between them build none.
    entry.pickerStale = instances.length > 0
    if (instances.length === 0) entry.picker = EMPTY_PICKER

    if (instances.length > 0 && entry.waiters.size > 0) {
      const picker = this.#pickerOf(entry)
      for (const w of [...entry.waiters]) w.resolve(picker)
    }

    const event: ChangeEvent = Object.freeze({
      service: entry.service,
      instances,
      added: diff.added,
      removed: diff.removed,
      updated: diff.updated,
    })
    // Internal listeners (pool lifecycle) first, each isolated: they are our code, but one
    // failing must not stop the others or the user's events.
    for (const l of this.#changeListeners)
      callListener('A wayfind internal change listener', () => {
        l(event)
      })
    this.#hub.emit('change', event)
  }

  /**
   * The entry's picker, built now if its instances changed since the last one (the previous
   * picker is handed over, so a strategy can carry its position). A strategy that throws
   * leaves the entry stale, so the next pick tries again rather than using the old instances.
   */
  #pickerOf(entry: ServiceEntry): Picker {
    if (!entry.pickerStale) return entry.picker
    entry.picker = this.#strategy.createPicker(entry.instances, {
      service: entry.service,
      load: this.load,
      random: this.#random,
      clock: this.clock,
      previous: entry.picker === EMPTY_PICKER ? undefined : entry.picker,
    })
    entry.pickerStale = false
    return entry.picker
  }

  #error(entry: ServiceEntry, error: WayfindErrorType): void {
    if (error.code !== ErrorCode.MALFORMED_INSTANCE) entry.lastError = error
    this.#hub.emit('error', { service: entry.service, error })
  }

  #expired(entry: ServiceEntry, service: string): void {
    // Someone is still waiting for this service: it is not idle. Re-insert outside of
    // dispose (lru-cache forbids re-entrancy there), keeping the watch running.
    if (entry.waiters.size > 0 && !this.closed) {
      queueMicrotask(() => {
        if (!this.closed && !this.#entries.has(service)) this.#entries.set(service, entry)
        else if (this.#entries.get(service) !== entry) entry.controller.abort()
      })
      return
    }
    entry.controller.abort()
  }
}

/**
 * Drops duplicate keys (a provider bug or a registry listing one instance twice): the first one
 * wins and the rest are reported as malformed. Returns the snapshot's own array when clean.
 */
function uniqueByKey(
  entry: ServiceEntry,
  snapshot: ServiceSnapshot,
  report: (e: WayfindErrorType) => void,
): readonly Instance[] {
  const list = snapshot.instances
  // Registries hand over sets sorted by key; sorted strictly means unique, without a set of keys.
  if (sortedByKey(list)) return list
  const seen = new Set<string>()
  let out: Instance[] | undefined
  for (let i = 0; i < list.length; i++) {
    const inst = list[i] as Instance
    if (seen.has(inst.key)) {
      out ??= list.slice(0, i)
      report(
        new MalformedInstanceError(
          `${entry.service}/${inst.key}`,
          'the registry listed this instance twice',
        ),
      )
      continue
    }
    seen.add(inst.key)
    out?.push(inst)
  }
  return out ?? list
}
