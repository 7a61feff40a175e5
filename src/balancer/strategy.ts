/**
 * Balancing contracts (grpc-js `picker.ts` / `load-balancer.ts` style) and the stock pickers.
 *
 * A {@link Strategy} turns an instance set into an immutable {@link Picker}. The service cache
 * builds a new picker on the first pick after a change and swaps it in, so `pick()` is
 * synchronous, takes no lock and never awaits. Load statistics that must survive swaps live outside the picker, in
 * wayfind's load tracker, keyed by `Instance.key`; strategies read them through {@link LoadRecords}.
 */
import type { Clock } from '../core/clock.js'
import type { WayfindError } from '../errors.js'
import type { Instance } from '../instance.js'

/** Per-pick input. Kept tiny: the hot path must not allocate. */
export interface PickContext {
  /** `Instance.key`s to avoid (instances already tried by this request). */
  readonly exclude?: ReadonlySet<string> | undefined
  /**
   * Requests one instance can carry at once for this caller (the dispatcher's
   * `connections × pipelining`); from that many in flight on, one more waits in the instance's
   * connection queue. Load-aware pickers prefer an instance below it. Absent or 0: unbounded.
   */
  readonly capacity?: number | undefined
}

/** A successful pick. Pickers pre-build one per instance so that picking allocates nothing. */
export interface PickOk {
  readonly kind: 'pick'
  readonly instance: Instance
}
/** No instance yet: wait for the next picker (the watch has not answered, or the set is empty). */
export interface PickQueue {
  readonly kind: 'queue'
}
/** Picking cannot succeed (e.g. every instance is excluded). */
export interface PickFail {
  readonly kind: 'fail'
  readonly error: WayfindError
}
export type PickResult = PickOk | PickQueue | PickFail

/** An immutable snapshot of a balancer's state: the momentary answer to "where next?". */
export interface Picker {
  /** The instances this picker chooses from. */
  readonly instances: readonly Instance[]
  /** Synchronous, O(1) in the number of instances, allocation-free on the success path. */
  pick(ctx?: PickContext): PickResult
  /**
   * `false` when picks never read latency: the dispatcher then times 1 request in 16 per
   * instance (enough for `stats()`). Absent or `true`: every request to an idle instance and
   * 1 in 8 to a busy one (see `DefaultLoadTracker.shouldTime`).
   */
  readonly usesLatency?: boolean
}

/**
 * Per-instance load as a strategy reads it. Written only by the dispatcher (attempt start and
 * end, latency samples); pickers read it.
 */
export interface LoadRecord {
  readonly key: string
  /** Requests dispatched to the instance and not yet ended. */
  readonly inflight: number
  /**
   * Latency estimate in ms at time `now` (decaying average, peak-sensitive), or the tracker's
   * default RTT when no sample was taken yet.
   */
  latencyMs(now: number): number
}

/**
 * The load records a strategy reads ({@link StrategyContext.load}): one {@link LoadRecord} per
 * instance key, kept across picker swaps. Read-only by design: the dispatcher keeps the load
 * itself (in-flight, latency, failures), so there is nothing for a strategy to implement here.
 */
export interface LoadRecords {
  /** The record for `key`, created on first use. */
  record(key: string): LoadRecord
}

/** What a strategy gets when building a picker. */
export interface StrategyContext {
  readonly service: string
  readonly load: LoadRecords
  /** Random source in [0, 1); injected so tests can seed it. */
  readonly random: () => number
  readonly clock: Clock
  /** The picker being replaced, when there is one: lets round-robin keep its position. */
  readonly previous: Picker | undefined
}

/**
 * A balancing policy. Built-in: `roundRobin()`, `leastLoaded()`, `random()`. Users may pass any
 * object implementing this.
 */
export interface Strategy {
  readonly name: string
  /**
   * Builds a picker for `instances` (never empty: the cache uses {@link EMPTY_PICKER} for that).
   * Pure and cheap; called on the first pick after a change (after the `change` event; changes
   * no request saw build none). The returned picker is never mutated afterwards.
   */
  createPicker(instances: readonly Instance[], ctx: StrategyContext): Picker
}

const QUEUE: PickQueue = Object.freeze({ kind: 'queue' })

/** The null picker: no instances yet, so callers wait for the next picker. */
export const EMPTY_PICKER: Picker = Object.freeze({
  instances: Object.freeze<Instance[]>([]),
  pick: (): PickResult => QUEUE,
})

/** A picker that always fails with `error`. */
export function failingPicker(error: WayfindError): Picker {
  const result: PickFail = Object.freeze({ kind: 'fail', error })
  return Object.freeze({ instances: Object.freeze<Instance[]>([]), pick: (): PickResult => result })
}
