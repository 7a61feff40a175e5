/**
 * Least-loaded: power of two choices (P2C) over two *distinct* instances; the cheaper wins.
 *
 * The first candidate advances round-robin (random start), the second is drawn uniformly from
 * the others (Finagle `P2CPick.scala`: `b = rng(n-1)`, `if b >= a then b++`), and a tie keeps the
 * first. Either candidate is still any instance with probability ~2/n per pick, so an overloaded
 * or slow instance is avoided exactly as with two random draws; what changes is that equal
 * instances take turns instead of winning ties at random, so each keeps its connections in use
 * (measured in docs/performance.md#pick-and-dispatch).
 *
 * Cost, with `latency: 'peak-ewma'` (the default, because the design asks for a latency-aware
 * least-loaded, docs/design/README.md#balancing): `latencyMs(now) × (inflight + 1) / weight`
 * (Finagle `PeakEwma.scala`, Linkerd: decay 10 s, default RTT 30 ms; both set on the
 * load tracker). With `latency: 'none'`: `(inflight + 1) / weight`, i.e. Envoy's LEAST_REQUEST
 * with `active_request_bias` 1.
 * Dividing by the registry weight makes in-flight settle in proportion to weight.
 *
 * Capacity (`PickContext.capacity`, the dispatcher's connections per instance): a candidate
 * below it beats one at or above it whatever their costs, because a request sent to a full
 * instance waits in that instance's connection queue while the other has an idle connection.
 * Without it, a latency estimate a few per cent lower (noise, on identical instances) pushes
 * an instance past its connections while another's sit idle.
 */
import { InvalidOptionError } from '../errors.js'
import type { Instance } from '../instance.js'
import {
  buildResults,
  ExcludedFailure,
  firstAllowed,
  loadView,
  weightsDiffer,
  type LoadView,
} from './pick-common.js'
import type {
  PickContext,
  PickOk,
  Picker,
  PickResult,
  Strategy,
  StrategyContext,
} from './strategy.js'

/** Options of {@link leastLoaded}. */
export interface LeastLoadedOptions {
  /**
   * `'peak-ewma'`: weigh in-flight by the instance's decaying peak latency (Finagle/Linkerd).
   * `'none'`: in-flight only (Envoy LEAST_REQUEST). @defaultValue 'peak-ewma'
   */
  readonly latency?: 'peak-ewma' | 'none'
}

/** P2C picker over one snapshot. */
export class LeastLoadedPicker implements Picker {
  readonly instances: readonly Instance[]
  readonly #results: PickOk[]
  readonly #failure: ExcludedFailure
  readonly #random: () => number
  readonly #view: LoadView
  readonly #slots: Int32Array
  readonly #invWeight: Float64Array | undefined
  readonly #latency: boolean
  readonly usesLatency: boolean
  /** The first candidate of the next pick (round-robin position). */
  #next: number

  constructor(instances: readonly Instance[], ctx: StrategyContext, latency: boolean) {
    this.instances = instances
    this.#results = buildResults(instances)
    this.#failure = new ExcludedFailure(ctx.service)
    this.#random = ctx.random
    this.#latency = latency
    this.usesLatency = latency
    const { view, slots } = loadView(instances, ctx.load, ctx.clock)
    this.#view = view
    this.#slots = slots
    // Equal weights (the common case) skip the weight array: one memory read fewer per candidate.
    if (weightsDiffer(instances)) {
      this.#invWeight = new Float64Array(instances.length)
      for (let i = 0; i < instances.length; i++)
        this.#invWeight[i] = 1 / (instances[i] as Instance).weight
    } else this.#invWeight = undefined
    this.#next = Math.floor(this.#random() * instances.length)
  }

  pick(ctx?: PickContext): PickResult {
    const n = this.#results.length
    const exclude = ctx?.exclude
    const filtered = exclude !== undefined && exclude.size > 0
    if (n === 1) {
      if (filtered && exclude.has((this.instances[0] as Instance).key)) return this.#failure.result
      return this.#results[0] as PickOk
    }
    let a = this.#next
    this.#next = a + 1 === n ? 0 : a + 1
    let b = (this.#random() * (n - 1)) | 0
    if (b >= a) b++
    if (filtered) {
      if (exclude.has((this.instances[a] as Instance).key)) {
        a = firstAllowed(this.instances, a, exclude)
        if (a < 0) return this.#failure.result
      }
      if (b === a || exclude.has((this.instances[b] as Instance).key)) {
        b = firstAllowed(this.instances, b, exclude, a)
        if (b < 0) return this.#results[a] as PickOk
      }
    }
    const view = this.#view
    const sa = this.#slots[a] as number
    const sb = this.#slots[b] as number
    const ia = view.inflightOf(sa)
    const ib = view.inflightOf(sb)
    const capacity = ctx?.capacity ?? 0
    if (capacity > 0 && ia >= capacity !== ib >= capacity)
      return this.#results[ia >= capacity ? b : a] as PickOk
    let ca = ia + 1
    let cb = ib + 1
    const inv = this.#invWeight
    if (inv !== undefined) {
      ca *= inv[a] as number
      cb *= inv[b] as number
    }
    if (this.#latency) {
      const now = view.compareNow()
      ca *= view.latencyOf(sa, now)
      cb *= view.latencyOf(sb, now)
    }
    return this.#results[cb < ca ? b : a] as PickOk
  }
}

/** Least-loaded (P2C) strategy factory. */
export function leastLoaded(options: LeastLoadedOptions = {}): Strategy {
  const latency: unknown = options.latency ?? 'peak-ewma'
  if (latency !== 'peak-ewma' && latency !== 'none')
    throw new InvalidOptionError('strategy.latency', latency, "Use 'peak-ewma' or 'none'.")
  return {
    name: 'least-loaded',
    createPicker: (instances: readonly Instance[], ctx: StrategyContext): Picker =>
      new LeastLoadedPicker(instances, ctx, latency === 'peak-ewma'),
  }
}
