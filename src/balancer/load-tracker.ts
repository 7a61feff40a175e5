/**
 * Per-instance load: in-flight requests, a peak-EWMA latency and consecutive failures, keyed by
 * `Instance.key` so that it survives picker swaps.
 *
 * The numbers live in parallel typed arrays indexed by a slot (one slot per key) rather than in
 * one object per instance: least-loaded pickers read two random slots per pick, and over 10,000
 * instances scattered objects cost a cache miss each (docs/design/dispatch.md#load-tracker-layout).
 * Records are thin views.
 */
import { systemClock, type Clock } from '../core/clock.js'
import { InvalidOptionError } from '../errors.js'
import type { LoadRecord, LoadRecords } from './strategy.js'

/** How a call ended, for the failure counter. `cancelled` (the caller aborted) counts as neither. */
export type CallOutcome = 'success' | 'failure' | 'cancelled'

/** Options of {@link DefaultLoadTracker}. */
export interface LoadTrackerOptions {
  /** Time source for the EWMA decay. @defaultValue systemClock */
  readonly clock?: Clock
  /**
   * Decay time constant of the peak-EWMA latency, in ms (Finagle `decayTime`, Linkerd
   * `DEFAULT_EWMA`). @defaultValue 10_000
   */
  readonly decayMs?: number
  /** Latency assumed for an instance with no sample yet (Linkerd's default RTT). @defaultValue 30 */
  readonly defaultRttMs?: number
}

const INITIAL_CAPACITY = 16

/**
 * `exp(-x)` for `x ≥ 0`. Under load, samples land microseconds apart against a decay of
 * seconds, so `x` is tiny and the second-order Taylor form is exact to 1e-10 (error < x³/6);
 * it skips a `Math.exp` call on each of the three decays a least-loaded request computes.
 */
export function decayFactor(x: number): number {
  return x < 1e-3 ? 1 - x + x * x * 0.5 : Math.exp(-x)
}

/** A view on one slot of a {@link DefaultLoadTracker}. */
export class InstanceLoad implements LoadRecord {
  readonly key: string
  /** Index into the tracker's arrays; stable for the record's life. */
  readonly slot: number
  readonly #tracker: DefaultLoadTracker

  constructor(tracker: DefaultLoadTracker, key: string, slot: number) {
    this.#tracker = tracker
    this.key = key
    this.slot = slot
  }

  get inflight(): number {
    return this.#tracker.inflightOf(this.slot)
  }

  /** Failures in a row since the last success (5xx or locally-originated errors). */
  get consecutiveFailures(): number {
    return this.#tracker.failuresOf(this.slot)
  }

  latencyMs(now: number): number {
    return this.#tracker.latencyOf(this.slot, now)
  }
}

/**
 * The load tracker: one per client, internal (not exported from the package). The dispatcher
 * calls {@link startSlot} when it sends an attempt to an instance, {@link observeSlot} at the
 * first response headers and {@link endSlot} exactly once when the attempt is over; strategies
 * read it through {@link LoadRecords}, the built-in pickers through its slot readers.
 *
 * Peak EWMA (Finagle `PeakEwma.scala`, tower `peak_ewma.rs`): a sample above the estimate is
 * adopted at once; a lower one is blended in with weight `1 - exp(-Δt/decay)`. Reads decay the
 * estimate towards 0 with the time since the last sample (Finagle's `observe(0)` on load read),
 * without writing, so an idle instance slowly looks cheap again and gets probed.
 */
export class DefaultLoadTracker implements LoadRecords {
  readonly clock: Clock
  readonly decayMs: number
  readonly defaultRttMs: number

  #records = new Map<string, InstanceLoad>()
  #inflight = new Int32Array(INITIAL_CAPACITY)
  #failures = new Int32Array(INITIAL_CAPACITY)
  #cost = new Float64Array(INITIAL_CAPACITY)
  #stamp = new Float64Array(INITIAL_CAPACITY)
  // 0 free, 1 live, 2 live with a sample, 3 retired (key forgotten, waiting for in-flight to drain).
  #state = new Uint8Array(INITIAL_CAPACITY)
  // Busy requests started per slot, wrapping: picks which of them are timed (shouldTime).
  #ticks = new Uint8Array(INITIAL_CAPACITY)
  #free: number[] = []
  #used = 0
  #latestStamp = 0

  constructor(options: LoadTrackerOptions = {}) {
    this.clock = options.clock ?? systemClock
    this.decayMs = options.decayMs ?? 10_000
    this.defaultRttMs = options.defaultRttMs ?? 30
    if (!Number.isFinite(this.decayMs) || this.decayMs <= 0)
      throw new InvalidOptionError(
        'decayMs',
        options.decayMs,
        'Use a positive number of milliseconds, e.g. 10_000.',
      )
    if (!Number.isFinite(this.defaultRttMs) || this.defaultRttMs <= 0)
      throw new InvalidOptionError(
        'defaultRttMs',
        options.defaultRttMs,
        'Use a positive number of milliseconds, e.g. 30.',
      )
  }

  /** The record for `key`, created on first use. */
  record(key: string): InstanceLoad {
    const existing = this.#records.get(key)
    if (existing !== undefined) return existing
    const slot = this.#allocate()
    const rec = new InstanceLoad(this, key, slot)
    this.#records.set(key, rec)
    return rec
  }

  /** Whether `key` currently has a record. */
  has(key: string): boolean {
    return this.#records.has(key)
  }

  /** Number of live records (retired ones still draining are not counted). */
  get size(): number {
    return this.#records.size
  }

  /** A call to `key` starts; returns the slot to hand back to {@link observeSlot}/{@link endSlot}. */
  start(key: string): number {
    const slot = this.record(key).slot
    this.#inflight[slot] = (this.#inflight[slot] ?? 0) + 1
    return slot
  }

  /** Latency sample (ms) for `key`, taken when the response headers arrive. */
  observe(key: string, rttMs: number): void {
    const rec = this.#records.get(key)
    if (rec !== undefined) this.observeSlot(rec.slot, rttMs)
  }

  /** A call to `key` is over. Invoke exactly once per {@link start}. */
  end(key: string, outcome: CallOutcome): void {
    const rec = this.#records.get(key)
    if (rec !== undefined) this.endSlot(rec.slot, outcome)
  }

  /** Slot form of {@link start}, for callers that already hold the record. */
  startSlot(slot: number): void {
    this.#inflight[slot] = (this.#inflight[slot] ?? 0) + 1
  }

  /**
   * Whether the call about to start on `slot` should be timed (ask before {@link startSlot}).
   * Every call to an idle instance is; while it has calls in flight, 1 in `mask + 1` (a power
   * of two), counted per instance so that samples stay spread when picks follow a rotation.
   *
   * Why not every call (least-loaded passes `mask` 7): under load a clock read per request
   * buys little. Peak EWMA keeps the highest recent sample, and a client busy enough to keep an
   * instance loaded delays its own responses, so its samples mostly carry its own event-loop
   * lag. A slow instance is still seen within eight of its requests, and a quiet service is
   * timed on every request.
   */
  shouldTime(slot: number, mask: number): boolean {
    if ((this.#inflight[slot] ?? 0) === 0) return true
    const t = ((this.#ticks[slot] ?? 0) + 1) & mask
    this.#ticks[slot] = t
    return t === 0
  }

  /** Slot form of {@link observe}; `now` (the clock's time) saves a clock read when the caller has it. */
  observeSlot(slot: number, rttMs: number, now: number = this.clock.now()): void {
    const state = this.#state[slot]
    if (state === 1) {
      // First sample replaces the default outright.
      this.#cost[slot] = rttMs
      this.#state[slot] = 2
    } else if (state === 2) {
      const cost = this.#cost[slot] ?? 0
      if (rttMs > cost) this.#cost[slot] = rttMs
      else {
        const w = decayFactor(Math.max(0, now - (this.#stamp[slot] ?? now)) / this.decayMs)
        this.#cost[slot] = cost * w + rttMs * (1 - w)
      }
    } else return
    this.#stamp[slot] = now
    if (now > this.#latestStamp) this.#latestStamp = now
  }

  /**
   * The latest sample time. Least-loaded pickers compare two decayed costs with it instead of
   * reading the clock: both decay by the same factor `exp(-now/decay)`, so any `now` at or after
   * every sample gives the same choice, and a clock read costs more than the rest of the pick.
   */
  get latestStamp(): number {
    return this.#latestStamp
  }

  /** @internal {@link latestStamp} for pickers (see {@link LoadView}). */
  compareNow(): number {
    return this.#latestStamp
  }

  /** Slot form of {@link end}. Safe on a retired slot: it frees the slot once drained. */
  endSlot(slot: number, outcome: CallOutcome): void {
    const inflight = (this.#inflight[slot] ?? 0) - 1
    this.#inflight[slot] = inflight < 0 ? 0 : inflight
    if (outcome === 'success') this.#failures[slot] = 0
    else if (outcome === 'failure') this.#failures[slot] = (this.#failures[slot] ?? 0) + 1
    if (inflight <= 0 && this.#state[slot] === 3) this.#release(slot)
  }

  /** Clears the failure counter of `key` (after an ejection, so a returning instance starts afresh). */
  resetFailures(key: string): void {
    const rec = this.#records.get(key)
    if (rec !== undefined) this.#failures[rec.slot] = 0
  }

  /**
   * Forgets `key` (the instance left its service). Calls still in flight keep their slot until
   * they end, so their decrement never lands on another instance that reused it.
   */
  delete(key: string): void {
    const rec = this.#records.get(key)
    if (rec === undefined) return
    this.#records.delete(key)
    if ((this.#inflight[rec.slot] ?? 0) <= 0) this.#release(rec.slot)
    else this.#state[rec.slot] = 3
  }

  /** Forgets every key not in `live`. O(records). */
  prune(live: ReadonlySet<string>): void {
    for (const key of [...this.#records.keys()]) if (!live.has(key)) this.delete(key)
  }

  // Hot-path readers used by the built-in pickers (no Map lookup, no allocation).
  /** @internal */
  inflightOf(slot: number): number {
    return this.#inflight[slot] ?? 0
  }
  /** @internal */
  failuresOf(slot: number): number {
    return this.#failures[slot] ?? 0
  }
  /** @internal Latency estimate of `slot` at `now`, in ms. */
  latencyOf(slot: number, now: number): number {
    if (this.#state[slot] !== 2) return this.defaultRttMs
    const dt = now - (this.#stamp[slot] ?? now)
    const cost = this.#cost[slot] ?? 0
    return dt <= 0 ? cost : cost * decayFactor(dt / this.decayMs)
  }

  #allocate(): number {
    let slot = this.#free.pop()
    if (slot === undefined) {
      if (this.#used === this.#inflight.length) this.#grow()
      slot = this.#used++
    }
    this.#inflight[slot] = 0
    this.#failures[slot] = 0
    this.#cost[slot] = this.defaultRttMs
    this.#stamp[slot] = 0
    this.#state[slot] = 1
    this.#ticks[slot] = 0
    return slot
  }

  #release(slot: number): void {
    this.#state[slot] = 0
    this.#inflight[slot] = 0
    this.#free.push(slot)
  }

  #grow(): void {
    const size = this.#inflight.length * 2
    const grow = <T extends Int32Array | Float64Array | Uint8Array>(
      a: T,
      make: (n: number) => T,
    ): T => {
      const b = make(size)
      b.set(a)
      return b
    }
    this.#inflight = grow(this.#inflight, (n) => new Int32Array(n))
    this.#failures = grow(this.#failures, (n) => new Int32Array(n))
    this.#cost = grow(this.#cost, (n) => new Float64Array(n))
    this.#stamp = grow(this.#stamp, (n) => new Float64Array(n))
    this.#state = grow(this.#state, (n) => new Uint8Array(n))
    this.#ticks = grow(this.#ticks, (n) => new Uint8Array(n))
  }
}
