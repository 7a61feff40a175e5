/**
 * An in-process registry: the embedded default for the demo and for tests, and the reference
 * implementation of the provider contract. Complete: watch, register, deregister, and TTL
 * expiry of registrations that stop heartbeating.
 */
import { abortReason, onAbort } from '../core/abort.js'
import { parseOptions } from '../core/options/check.js'
import { clockOption } from '../core/options/common.js'
import { object, type SchemaFor } from '../core/options/schema.js'
import type { Clock, TimerHandle } from '../core/clock.js'
import { Closable } from '../core/lifecycle.js'
import { callListener } from '../core/listener-errors.js'
import {
  InvalidOptionError,
  RegistrationConflictError,
  RegistrationError,
  RegistryUnavailableError,
  type WayfindError,
} from '../errors.js'
import { createInstance, instanceProblem, type Instance, type InstanceInit } from '../instance.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationSession,
} from '../registration/contract.js'
import type { RegistryProvider, WatchListener, WatchOptions } from './provider.js'
import { assertServiceName, consulNameRule } from './service-name.js'

/** Options of {@link memoryRegistry}. */
export interface MemoryRegistryOptions {
  /** Clock for TTL expiry; injectable for tests. @defaultValue the system clock */
  readonly clock?: Clock
}

/** An instance as given to {@link MemoryRegistry.put}: `service` comes from the call. */
export type MemoryInstanceInit = Omit<InstanceInit, 'service' | 'key'>

/** The memory registry: a provider plus direct controls for tests and demos. */
export interface MemoryRegistry extends RegistryProvider, AsyncDisposable {
  readonly name: 'memory'
  /** Adds or replaces an instance (by id). Throws `InvalidOptionError` for an invalid one. */
  put(service: string, instance: MemoryInstanceInit): Instance
  /** Removes an instance; returns whether it existed. */
  remove(service: string, id: string): boolean
  /** Replaces a service's whole set in one change. */
  set(service: string, instances: readonly MemoryInstanceInit[]): void
  /** Current instances of a service, as watchers see them. */
  list(service: string): readonly Instance[]
  /**
   * Makes the registry fail: watchers of `service` (every service when omitted) get a
   * retryable `RegistryUnavailableError` and no snapshot until {@link MemoryRegistry.recover}.
   * For testing last-good behaviour.
   */
  fail(service?: string): void
  /** Ends {@link MemoryRegistry.fail}: watchers get the current set again. */
  recover(service?: string): void
  /** Number of active watches, per service (for tests that check unwatching). */
  watchCount(service: string): number
  /**
   * Another handle on the same registry, for a second client in the same process (each
   * client closes its registry on close). Closing a handle ends only its own watches and
   * heartbeats; the data stays.
   */
  client(): RegistryProvider & AsyncDisposable
  register(
    registration: NormalizedRegistration,
    context: RegisterContext,
  ): Promise<RegistrationSession>
}

interface Watch {
  readonly listener: WatchListener
  readonly signal: AbortSignal
}

interface TtlState {
  expiresAt: number
  timer: TimerHandle | undefined
}

/** Who registered an entry, so that a takeover reaches the owner it displaced. */
interface Owner {
  readonly address: string
  readonly port: number
  /** Called once when another registration takes the entry over. */
  readonly takenOver: (by: string) => void
}

/** Creates an in-process registry. */
/** The schema of {@link MemoryRegistryOptions}. */
export const memorySchema = {
  clock: clockOption(),
} satisfies SchemaFor<MemoryRegistryOptions>

const memoryRegistryOptions = object(memorySchema).default({})

export function memoryRegistry(options: MemoryRegistryOptions = {}): MemoryRegistry {
  return new InMemoryRegistry(
    parseOptions(memoryRegistryOptions, options, { label: 'memoryRegistry()' }).clock,
  )
}

class InMemoryRegistry extends Closable implements MemoryRegistry {
  readonly name = 'memory' as const
  readonly #clock: Clock
  readonly #services = new Map<string, Map<string, Instance>>()
  readonly #watches = new Map<string, Set<Watch>>()
  readonly #failing = new Set<string>()
  readonly #ttl = new Map<string, TtlState>()
  readonly #owners = new Map<string, Owner>()
  #failAll = false
  #revision = 0n

  constructor(clock: Clock) {
    super('memory registry')
    this.#clock = clock
  }

  put(service: string, init: MemoryInstanceInit): Instance {
    const instance = this.#build(service, init)
    this.#map(service).set(instance.id, instance)
    this.#changed(service)
    return instance
  }

  remove(service: string, id: string): boolean {
    const existed = this.#services.get(service)?.delete(id) ?? false
    if (existed) this.#changed(service)
    return existed
  }

  set(service: string, instances: readonly MemoryInstanceInit[]): void {
    const built = instances.map((i) => this.#build(service, i))
    const map = new Map<string, Instance>()
    for (const i of built) map.set(i.id, i)
    this.#services.set(service, map)
    this.#changed(service)
  }

  list(service: string): readonly Instance[] {
    return [...(this.#services.get(service)?.values() ?? [])]
  }

  fail(service?: string): void {
    if (service === undefined) this.#failAll = true
    else this.#failing.add(service)
    for (const s of service === undefined ? [...this.#watches.keys()] : [service]) this.#changed(s)
  }

  recover(service?: string): void {
    if (service === undefined) {
      this.#failAll = false
      this.#failing.clear()
    } else this.#failing.delete(service)
    for (const s of service === undefined ? [...this.#watches.keys()] : [service]) this.#changed(s)
  }

  /**
   * The Consul rule ({@link consulNameRule}): the memory registry stands in for real registries
   * in tests and demos, so it refuses what Consul (the stricter of the two) cannot hold.
   */
  checkServiceName(name: string): void {
    assertServiceName('memory', name, consulNameRule)
  }

  watchCount(service: string): number {
    return this.#watches.get(service)?.size ?? 0
  }

  watch(service: string, listener: WatchListener, options: WatchOptions): void {
    this.assertOpen('watch')
    if (options.signal.aborted) return
    const w: Watch = { listener, signal: options.signal }
    let set = this.#watches.get(service)
    if (set === undefined) this.#watches.set(service, (set = new Set()))
    set.add(w)
    const watches = set
    onAbort(options.signal, () => {
      watches.delete(w)
    })
    // Contract: never call the listener synchronously from watch().
    queueMicrotask(() => {
      this.#deliver(service, w)
    })
  }

  register(reg: NormalizedRegistration, ctx: RegisterContext): Promise<RegistrationSession> {
    try {
      return Promise.resolve(this.#register(reg, ctx))
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)))
    }
  }

  #register(reg: NormalizedRegistration, ctx: RegisterContext): RegistrationSession {
    if (this.closed) throw new RegistrationError('The memory registry is closed')
    if (ctx.signal.aborted) throw abortReason(ctx.signal)
    // An HTTP check is accepted but not probed: no agent runs in process. TTL checks are real.
    const init: MemoryInstanceInit = {
      id: reg.id,
      host: reg.address,
      port: reg.port,
      tags: reg.tags,
      meta: reg.meta,
      weight: reg.weight,
    }
    this.#validate(reg.name, init)
    const ttlMs = reg.check?.kind === 'ttl' ? reg.check.ttlMs : undefined
    const key = `${reg.name}\u0000${reg.id}`

    // Ownership, by the same rule as Consul and etcd: an entry another live registration holds
    // is a conflict unless it advertises our very address and port (an earlier run of this
    // endpoint) or the caller asked to replace it. An entry put() by hand has no owner.
    const previous = this.#owners.get(key)
    if (
      previous !== undefined &&
      this.#services.get(reg.name)?.has(reg.id) === true &&
      ctx.replace !== true &&
      !(previous.address === reg.address && previous.port === reg.port)
    )
      throw new RegistrationConflictError(
        reg.name,
        reg.id,
        `another live registration (${previous.address}:${previous.port}) holds this instance id; pass { replace: true } to take it over`,
      )
    let lost = false
    const owner: Owner = {
      address: reg.address,
      port: reg.port,
      takenOver: (by) => {
        lost = true
        heartbeat?.clear()
        // Our TTL must not expire the new owner's entry.
        const ttl = this.#ttl.get(key)
        if (ttl !== undefined && ttl === ttlState) {
          ttl.timer?.clear()
          this.#ttl.delete(key)
        }
        if (ctx.signal.aborted) return
        ctx.onState(
          'lost',
          new RegistrationConflictError(
            reg.name,
            reg.id,
            `another registration (${by}) took this instance id over; this one stopped and will not remove it`,
          ),
        )
      },
    }
    const ours = (): boolean => this.#owners.get(key) === owner

    const registerNow = (): void => {
      const displaced = this.#owners.get(key)
      this.#owners.set(key, owner)
      this.put(reg.name, init)
      if (displaced !== undefined && displaced !== owner)
        displaced.takenOver(`${reg.address}:${reg.port}`)
      ctx.onState('registered')
    }
    let heartbeat: TimerHandle | undefined
    let ttlState: TtlState | undefined
    registerNow()

    if (ttlMs !== undefined) {
      // TTL semantics as in Consul: the instance expires unless a heartbeat arrives within ttlMs.
      // The heartbeat runs on its own timer every ttl/3, like the real registrars.
      const state: TtlState = { expiresAt: this.#clock.now() + ttlMs, timer: undefined }
      this.#ttl.set(key, state)
      ttlState = state
      this.#armExpiry(reg.name, reg.id, key, state)
      const beat = (): void => {
        if (ctx.signal.aborted || this.closed || lost) return
        if (!this.#services.get(reg.name)?.has(reg.id) || !ours()) {
          // Expired (or removed behind our back): register again, as a real registrar would.
          ctx.onState('lost')
          registerNow()
        }
        state.expiresAt = this.#clock.now() + ttlMs
        this.#armExpiry(reg.name, reg.id, key, state)
        heartbeat = this.#clock.setTimeout(beat, Math.max(1, Math.floor(ttlMs / 3)))
      }
      heartbeat = this.#clock.setTimeout(beat, Math.max(1, Math.floor(ttlMs / 3)))
      onAbort(ctx.signal, () => {
        heartbeat?.clear()
      })
    }

    return {
      deregister: (signal: AbortSignal): Promise<void> => {
        if (signal.aborted) return Promise.reject(abortReason(signal))
        heartbeat?.clear()
        // Taken over (or expired and re-registered by another owner): the entry is not ours.
        if (!ours()) return Promise.resolve()
        const state = this.#ttl.get(key)
        state?.timer?.clear()
        this.#ttl.delete(key)
        this.#owners.delete(key)
        this.remove(reg.name, reg.id)
        return Promise.resolve()
      },
    }
  }

  client(): RegistryProvider & AsyncDisposable {
    return new MemoryHandle(this)
  }

  protected onClose(): Promise<void> {
    this.#watches.clear()
    for (const s of this.#ttl.values()) s.timer?.clear()
    this.#ttl.clear()
    return Promise.resolve()
  }

  #armExpiry(service: string, id: string, key: string, state: TtlState): void {
    state.timer?.clear()
    const delay = Math.max(0, state.expiresAt - this.#clock.now())
    state.timer = this.#clock.setTimeout(() => {
      if (this.#ttl.get(key) !== state) return
      if (this.#clock.now() >= state.expiresAt) this.remove(service, id)
    }, delay)
  }

  #map(service: string): Map<string, Instance> {
    let map = this.#services.get(service)
    if (map === undefined) this.#services.set(service, (map = new Map<string, Instance>()))
    return map
  }

  #validate(service: string, init: MemoryInstanceInit): void {
    this.checkServiceName(service)
    const problem = instanceProblem({ ...init, service })
    if (problem !== undefined)
      throw new InvalidOptionError('instance', init, `Fix the instance: ${problem}.`)
  }

  #build(service: string, init: MemoryInstanceInit): Instance {
    this.#validate(service, init)
    return createInstance({ ...init, service, key: init.id })
  }

  #changed(service: string): void {
    this.#revision++
    const watches = this.#watches.get(service)
    if (watches === undefined) return
    for (const w of watches)
      queueMicrotask(() => {
        this.#deliver(service, w)
      })
  }

  #deliver(service: string, w: Watch): void {
    if (this.closed || w.signal.aborted) return
    // Delivered from a microtask: a throw here would be an uncaught exception, so it is reported
    // as a listener error (the watch stays).
    if (this.#failAll || this.#failing.has(service)) {
      const error: WayfindError = new RegistryUnavailableError(
        `memory registry: ${service} is failing (test switch)`,
      )
      callListener('A wayfind watch listener', () => {
        w.listener.onError(error)
      })
      return
    }
    const snapshot = { service, instances: this.list(service), revision: this.#revision.toString() }
    callListener('A wayfind watch listener', () => {
      w.listener.onSnapshot(snapshot)
    })
  }
}

/**
 * Another handle on a memory registry ({@link MemoryRegistry.client}): its own lifecycle, the
 * registry's data. Closing it ends only the watches and heartbeats started through it.
 */
class MemoryHandle extends Closable implements RegistryProvider {
  readonly name = 'memory'
  readonly #registry: InMemoryRegistry

  constructor(registry: InMemoryRegistry) {
    super('memory registry client')
    this.#registry = registry
  }

  checkServiceName(name: string): void {
    this.#registry.checkServiceName(name)
  }

  watch(service: string, listener: WatchListener, options: WatchOptions): void {
    this.assertOpen('watch')
    this.#registry.watch(service, listener, { signal: this.#link(options.signal) })
  }

  register(reg: NormalizedRegistration, ctx: RegisterContext): Promise<RegistrationSession> {
    if (this.closed) return Promise.reject(new RegistrationError('The memory registry is closed'))
    return this.#registry.register(reg, { ...ctx, signal: this.#link(ctx.signal) })
  }

  protected onClose(): Promise<void> {
    return Promise.resolve()
  }

  #link(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, this.signal])
  }
}
