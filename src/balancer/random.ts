/**
 * Uniform random (weighted by the alias method when weights differ). Stateless and O(1).
 */
import type { Instance } from '../instance.js'
import { AliasTable } from './alias-table.js'
import { buildResults, ExcludedFailure, firstAllowed, weightsDiffer } from './pick-common.js'
import type {
  PickContext,
  PickOk,
  Picker,
  PickResult,
  Strategy,
  StrategyContext,
} from './strategy.js'

/** Random picker; `alias` is set when weights differ. */
export class RandomPicker implements Picker {
  readonly usesLatency = false
  readonly instances: readonly Instance[]
  readonly #results: PickOk[]
  readonly #failure: ExcludedFailure
  readonly #random: () => number
  readonly #alias: AliasTable | undefined

  constructor(instances: readonly Instance[], random: () => number, service: string) {
    this.instances = instances
    this.#results = buildResults(instances)
    this.#failure = new ExcludedFailure(service)
    this.#random = random
    this.#alias = weightsDiffer(instances)
      ? new AliasTable(instances.map((i) => i.weight))
      : undefined
  }

  #draw(): number {
    const r = this.#random()
    return this.#alias === undefined ? (r * this.#results.length) | 0 : this.#alias.sample(r)
  }

  pick(ctx?: PickContext): PickResult {
    let i = this.#draw()
    const exclude = ctx?.exclude
    if (
      exclude !== undefined &&
      exclude.size > 0 &&
      exclude.has((this.instances[i] as Instance).key)
    ) {
      // A few more draws keep the distribution; then a scan settles it.
      for (let k = 0; k < 3 && exclude.has((this.instances[i] as Instance).key); k++)
        i = this.#draw()
      if (exclude.has((this.instances[i] as Instance).key)) {
        i = firstAllowed(this.instances, i, exclude)
        if (i < 0) return this.#failure.result
      }
    }
    return this.#results[i] as PickOk
  }
}

/** Random strategy factory. */
export function random(): Strategy {
  return {
    name: 'random',
    createPicker: (instances: readonly Instance[], ctx: StrategyContext): Picker =>
      new RandomPicker(instances, ctx.random, ctx.service),
  }
}
