/**
 * Typed application events, on mitt. mitt's `emit` is synchronous and does not catch: one
 * throwing handler would abort the others and throw into the emitter's caller, which for us is a
 * watch loop. So every handler runs in its own try/catch and a throw becomes a process warning.
 * Users get `on`/`off` only, never `emit`.
 */
import mittImport from 'mitt'
import type { Emitter, EventType, Handler } from 'mitt'
import type { WayfindError } from './errors.js'
import type { Instance } from './instance.js'
import { callListener } from './core/listener-errors.js'

// mitt's typings are CommonJS-style while Node loads its ESM build, so TypeScript (nodenext) and
// the runtime disagree on what the default import is. Take whichever is the function.
type MittFactory = <E extends Record<EventType, unknown>>() => Emitter<E>
const mittModule: unknown = mittImport
const mitt = (
  typeof mittModule === 'function' ? mittModule : (mittModule as { default: unknown }).default
) as MittFactory

/** A service's instance set really changed (content, not just a registry index). */
export interface ChangeEvent {
  readonly service: string
  /** The new full set. */
  readonly instances: readonly Instance[]
  readonly added: readonly Instance[]
  readonly removed: readonly Instance[]
  /** Instances whose key stayed but whose content (address, tags, meta, weight, status) changed. */
  readonly updated: readonly Instance[]
}

/** Something went wrong in the background; the last good state keeps serving. */
export interface ErrorEvent {
  /** The service concerned, when there is one. */
  readonly service?: string
  readonly error: WayfindError
}

/** A registration of the running service changed state. */
export interface RegistrationEvent {
  readonly service: string
  readonly id: string
  /** Why, when the state change came from a failure. */
  readonly error?: WayfindError
}

/** An instance was taken out of (or put back into) rotation by passive outlier detection. */
export interface EjectionEvent {
  readonly service: string
  readonly instance: Instance
  /** For `eject`: how long it stays out. */
  readonly durationMs?: number
}

/** The map of every event a {@link WayfindEventsApi} emits. */
export type WayfindEvents = {
  change: ChangeEvent
  error: ErrorEvent
  registered: RegistrationEvent
  /** A registration is degraded (heartbeats or keepalives failing); it is being renewed. */
  registrationDegraded: RegistrationEvent
  /**
   * The registry forgot the registration and wayfind is registering again (`error` is a
   * `LeaseLostError`), or another process took the instance id over (`error` is a
   * `RegistrationConflictError`): that registration stops for good and leaves the entry alone.
   */
  registrationLost: RegistrationEvent
  deregistered: RegistrationEvent
  eject: EjectionEvent
  uneject: EjectionEvent
}

/** The subscribe-only face of the events. */
export interface WayfindEventsApi<E extends Record<string, unknown> = WayfindEvents> {
  /** Adds a handler; returns a function that removes it. */
  on<K extends keyof E>(type: K, handler: (event: E[K]) => void): () => void
  /** Removes a handler (or every handler of `type` when none is given). */
  off<K extends keyof E>(type: K, handler?: (event: E[K]) => void): void
}

/** Internal: the events plus `emit`. */
export interface EventHub<E extends Record<string, unknown> = WayfindEvents> {
  readonly api: WayfindEventsApi<E>
  emit<K extends keyof E>(type: K, event: E[K]): void
  /** Whether anyone listens to `type` (skip building costly events nobody reads). */
  has(type: keyof E): boolean
  clear(): void
}

/** Creates an isolated event hub. */
export function createEvents<E extends Record<string, unknown> = WayfindEvents>(): EventHub<E> {
  const emitter: Emitter<E> = mitt<E>()
  // Our wrappers, by user handler, so that off(handler) finds what on(handler) registered.
  const wrappers = new Map<keyof E, Map<unknown, Handler<E[keyof E]>>>()

  const api: WayfindEventsApi<E> = {
    on(type, handler) {
      let byHandler = wrappers.get(type)
      if (byHandler === undefined)
        wrappers.set(type, (byHandler = new Map<unknown, Handler<E[keyof E]>>()))
      const existing = byHandler.get(handler)
      if (existing !== undefined)
        return () => {
          api.off(type, handler)
        }
      const wrapped = (event: E[typeof type]): void => {
        callListener(`A wayfind "${String(type)}" listener`, () => {
          handler(event)
        })
      }
      byHandler.set(handler, wrapped as Handler<E[keyof E]>)
      emitter.on(type, wrapped)
      return () => {
        api.off(type, handler)
      }
    },
    off(type, handler) {
      const byHandler = wrappers.get(type)
      if (byHandler === undefined) return
      if (handler === undefined) {
        for (const w of byHandler.values()) emitter.off(type, w as Handler<E[typeof type]>)
        wrappers.delete(type)
        return
      }
      const w = byHandler.get(handler)
      if (w === undefined) return
      emitter.off(type, w as Handler<E[typeof type]>)
      byHandler.delete(handler)
    },
  }
  return {
    api,
    emit(type, event) {
      emitter.emit(type, event)
    },
    has(type) {
      return (wrappers.get(type)?.size ?? 0) > 0
    },
    clear() {
      emitter.all.clear()
      wrappers.clear()
    },
  }
}
