/**
 * Round-robin. Equal weights: `instances[next++ % n]`, starting at a random offset so a fleet of
 * clients does not all begin on instance 0, and keeping its position across picker swaps
 * (grpc-js `load-balancer-round-robin.ts`, Envoy `round_robin_lb.h`). Unequal weights: an
 * earliest-deadline-first schedule, deadline += 1/weight per pick (Envoy `edf_scheduler.h`).
 */
import type { Instance } from '../instance.js'
import { buildResults, ExcludedFailure, firstAllowed, weightsDiffer } from './pick-common.js'
import type {
  PickContext,
  PickOk,
  Picker,
  PickResult,
  Strategy,
  StrategyContext,
} from './strategy.js'

/** Equal-weight round-robin picker. */
export class RoundRobinPicker implements Picker {
  readonly usesLatency = false
  readonly instances: readonly Instance[]
  readonly #results: PickOk[]
  readonly #failure: ExcludedFailure
  #next: number

  constructor(instances: readonly Instance[], start: number, service: string) {
    this.instances = instances
    this.#results = buildResults(instances)
    this.#failure = new ExcludedFailure(service)
    this.#next = start % instances.length
  }

  /** Index the next pick starts from. */
  get position(): number {
    return this.#next
  }

  /** Key of the instance the next unconstrained pick returns. */
  get nextKey(): string | undefined {
    return this.instances[this.#next]?.key
  }

  pick(ctx?: PickContext): PickResult {
    const n = this.#results.length
    let i = this.#next
    const exclude = ctx?.exclude
    if (exclude !== undefined && exclude.size > 0) {
      i = firstAllowed(this.instances, i, exclude)
      if (i < 0) return this.#failure.result
    }
    this.#next = i + 1 === n ? 0 : i + 1
    return this.#results[i] as PickOk
  }
}

/** Weighted round-robin: EDF over a binary heap, O(log n) per pick. */
export class WeightedRoundRobinPicker implements Picker {
  readonly usesLatency = false
  readonly instances: readonly Instance[]
  readonly #results: PickOk[]
  readonly #failure: ExcludedFailure
  readonly #heap: Int32Array
  readonly #deadline: Float64Array
  readonly #period: Float64Array
  // FIFO tie-break between equal deadlines, as in Envoy's EDF scheduler.
  readonly #order: Float64Array
  #seq = 0

  constructor(instances: readonly Instance[], random: () => number, service: string) {
    const n = instances.length
    this.instances = instances
    this.#results = buildResults(instances)
    this.#failure = new ExcludedFailure(service)
    this.#heap = new Int32Array(n)
    this.#deadline = new Float64Array(n)
    this.#period = new Float64Array(n)
    this.#order = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      const period = 1 / (instances[i] as Instance).weight
      this.#period[i] = period
      // A random phase per entry (grpc-js WRR) so clients do not move in lockstep.
      this.#deadline[i] = random() * period
      this.#order[i] = this.#seq++
      this.#heap[i] = i
    }
    for (let i = (n >> 1) - 1; i >= 0; i--) this.#down(i, n)
  }

  pick(ctx?: PickContext): PickResult {
    const exclude = ctx?.exclude
    if (exclude === undefined || exclude.size === 0)
      return this.#results[this.#advanceTop()] as PickOk
    if (firstAllowed(this.instances, 0, exclude) < 0) return this.#failure.result
    // Rare path: step over excluded entries, then restore their deadlines.
    const skipped: [number, number, number][] = []
    for (;;) {
      const top = this.#heap[0] as number
      if (!exclude.has((this.instances[top] as Instance).key)) break
      skipped.push([top, this.#deadline[top] as number, this.#order[top] as number])
      this.#advanceTop()
    }
    const chosen = this.#advanceTop()
    for (const [i, d, o] of skipped) {
      this.#deadline[i] = d
      this.#order[i] = o
    }
    if (skipped.length > 0)
      for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#down(i, this.#heap.length)
    return this.#results[chosen] as PickOk
  }

  /** Returns the entry with the earliest deadline and reschedules it one period later. */
  #advanceTop(): number {
    const top = this.#heap[0] as number
    this.#deadline[top] = (this.#deadline[top] as number) + (this.#period[top] as number)
    this.#order[top] = this.#seq++
    this.#down(0, this.#heap.length)
    return top
  }

  #less(a: number, b: number): boolean {
    const da = this.#deadline[a] as number
    const db = this.#deadline[b] as number
    return da < db || (da === db && (this.#order[a] as number) < (this.#order[b] as number))
  }

  #down(i: number, n: number): void {
    const heap = this.#heap
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) return
      const r = l + 1
      let m = l
      if (r < n && this.#less(heap[r] as number, heap[l] as number)) m = r
      if (!this.#less(heap[m] as number, heap[i] as number)) return
      const t = heap[i] as number
      heap[i] = heap[m] as number
      heap[m] = t
      i = m
    }
  }
}

/** Round-robin strategy factory. */
export function roundRobin(): Strategy {
  return {
    name: 'round-robin',
    createPicker(instances: readonly Instance[], ctx: StrategyContext): Picker {
      if (weightsDiffer(instances))
        return new WeightedRoundRobinPicker(instances, ctx.random, ctx.service)
      const prev = ctx.previous
      let start: number
      if (prev instanceof RoundRobinPicker) {
        // Continue where the previous snapshot was: at the same instance if it survived,
        // else at the same position.
        const key = prev.nextKey
        const idx = key === undefined ? -1 : instances.findIndex((i) => i.key === key)
        start = idx >= 0 ? idx : prev.position
      } else start = Math.floor(ctx.random() * instances.length)
      return new RoundRobinPicker(instances, start, ctx.service)
    },
  }
}
