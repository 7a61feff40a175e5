/**
 * Passive outlier ejection with Envoy's consecutive-failures rules
 * (`docs/root/intro/arch_overview/upstream/outlier.rst`, `outlier_detection.proto`):
 * `consecutiveFailures` in a row eject an instance for `base × times ejected` (capped); at most
 * `maxEjectionPercent` of a service's instances are out, but always at least one; each
 * `intervalMs` an instance that is not ejected forgets one past ejection; and below
 * `panicThresholdPercent` healthy instances the balancer ignores ejections (panic mode,
 * `panic_threshold.rst`). Pickers see ejections as the `exclude` set of a pick.
 */
import type { Clock, TimerHandle } from '../core/clock.js'
import type { EventHub } from '../events.js'
import type { Instance } from '../instance.js'
import { debug, ejectChannel } from './debug.js'
import type { ParsedOutlierOptions } from './options.js'

interface OutlierState {
  instance: Instance
  ejectCount: number
  ejectedUntil: number
  /** When it last came back (clock ms). */
  returnedAt: number
  timer: TimerHandle | undefined
}

interface ServiceOutliers {
  readonly states: Map<string, OutlierState>
  /** Keys currently ejected: handed to pickers as `exclude`, never copied on the hot path. */
  readonly ejected: Set<string>
}

/** Read-only view for stats. */
export interface OutlierInfo {
  readonly ejected: boolean
  readonly ejectCount: number
  /** Remaining ejection time, in ms, when ejected. */
  readonly ejectedForMs: number
}

/** Ejection state of every service the dispatcher talks to. */
export class OutlierDetector {
  readonly #options: ParsedOutlierOptions
  readonly #clock: Clock
  readonly #hub: EventHub | undefined
  readonly #onReturn: (service: string, key: string) => void
  readonly #services = new Map<string, ServiceOutliers>()
  #ejectedTotal = 0
  #sweep: TimerHandle | undefined
  #closed = false

  constructor(
    options: ParsedOutlierOptions,
    clock: Clock,
    hub: EventHub | undefined,
    onReturn: (service: string, key: string) => void,
  ) {
    this.#options = options
    this.#clock = clock
    this.#hub = hub
    this.#onReturn = onReturn
  }

  /**
   * The keys to exclude when picking among `total` instances of `service`, or undefined when
   * none are ejected or the service is in panic mode. O(1); allocation-free.
   */
  excludeFor(service: string, total: number): ReadonlySet<string> | undefined {
    if (this.#ejectedTotal === 0) return undefined
    const s = this.#services.get(service)
    if (s === undefined || s.ejected.size === 0) return undefined
    if (this.isPanic(s.ejected.size, total)) return undefined
    return s.ejected
  }

  /** Whether `ejected` out of `total` leaves fewer healthy instances than the panic threshold. */
  isPanic(ejected: number, total: number): boolean {
    return total === 0 || ((total - ejected) * 100) / total < this.#options.panicThresholdPercent
  }

  /** Ejection state of one instance, for stats. */
  info(service: string, key: string): OutlierInfo {
    const st = this.#services.get(service)?.states.get(key)
    if (st === undefined) return { ejected: false, ejectCount: 0, ejectedForMs: 0 }
    const ejected = st.timer !== undefined
    return {
      ejected,
      ejectCount: st.ejectCount,
      ejectedForMs: ejected ? Math.max(0, st.ejectedUntil - this.#clock.now()) : 0,
    }
  }

  /** Number of ejected instances of `service`. */
  ejectedCount(service: string): number {
    return this.#services.get(service)?.ejected.size ?? 0
  }

  /**
   * A call to `instance` failed and it has now failed `consecutive` times in a row; `total` is
   * the size of its service. Returns true when this ejected it.
   */
  reportFailure(service: string, instance: Instance, consecutive: number, total: number): boolean {
    if (this.#closed || consecutive < this.#options.consecutiveFailures) return false
    let s = this.#services.get(service)
    if (s === undefined)
      this.#services.set(service, (s = { states: new Map(), ejected: new Set() }))
    if (s.ejected.has(instance.key)) return false
    const maxEjected = Math.max(1, Math.floor((total * this.#options.maxEjectionPercent) / 100))
    if (s.ejected.size >= maxEjected) return false
    let st = s.states.get(instance.key)
    if (st === undefined) {
      st = { instance, ejectCount: 0, ejectedUntil: 0, returnedAt: 0, timer: undefined }
      s.states.set(instance.key, st)
    }
    st.instance = instance
    st.ejectCount++
    const durationMs = Math.min(
      this.#options.baseEjectionMs * st.ejectCount,
      this.#options.maxEjectionMs,
    )
    st.ejectedUntil = this.#clock.now() + durationMs
    const state = st
    const svc = s
    st.timer = this.#clock.setTimeout(() => {
      this.#return(service, svc, state)
    }, durationMs)
    s.ejected.add(instance.key)
    this.#ejectedTotal++
    this.#armSweep()
    debug('eject %s %s for %d ms (ejection #%d)', service, instance.key, durationMs, st.ejectCount)
    if (ejectChannel.hasSubscribers)
      ejectChannel.publish({ service, instance, ejected: true, durationMs })
    this.#hub?.emit('eject', { service, instance, durationMs })
    return true
  }

  /** The instance left its service: forget it (no `uneject` event: it is gone). */
  remove(service: string, key: string): void {
    const s = this.#services.get(service)
    const st = s?.states.get(key)
    if (s === undefined || st === undefined) return
    st.timer?.clear()
    if (s.ejected.delete(key)) this.#ejectedTotal--
    s.states.delete(key)
    if (s.states.size === 0) this.#services.delete(service)
  }

  /** Cancels every timer; nothing fires afterwards. */
  close(): void {
    this.#closed = true
    this.#sweep?.clear()
    this.#sweep = undefined
    for (const s of this.#services.values()) for (const st of s.states.values()) st.timer?.clear()
    this.#services.clear()
    this.#ejectedTotal = 0
  }

  #return(service: string, s: ServiceOutliers, st: OutlierState): void {
    if (this.#closed) return
    st.timer = undefined
    st.returnedAt = this.#clock.now()
    if (!s.ejected.delete(st.instance.key)) return
    this.#ejectedTotal--
    this.#onReturn(service, st.instance.key)
    debug('uneject %s %s', service, st.instance.key)
    if (ejectChannel.hasSubscribers)
      ejectChannel.publish({ service, instance: st.instance, ejected: false })
    this.#hub?.emit('uneject', { service, instance: st.instance })
  }

  /**
   * Envoy (`detector_impl.cc` checkHostForUneject): at each interval, a host that has been back
   * for at least the base ejection time has its ejection multiplier decremented.
   */
  #armSweep(): void {
    if (this.#sweep !== undefined || this.#closed) return
    this.#sweep = this.#clock.setTimeout(() => {
      this.#sweep = undefined
      let remaining = 0
      const now = this.#clock.now()
      for (const [service, s] of this.#services) {
        for (const [key, st] of s.states) {
          const healthy =
            st.timer === undefined && now - st.returnedAt >= this.#options.baseEjectionMs
          if (healthy && --st.ejectCount <= 0) s.states.delete(key)
          else remaining++
        }
        if (s.states.size === 0) this.#services.delete(service)
      }
      if (remaining > 0) this.#armSweep()
    }, this.#options.intervalMs)
  }
}
