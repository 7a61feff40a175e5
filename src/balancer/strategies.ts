/**
 * Maps the client's `strategy` option to a {@link Strategy}: the one place a strategy is
 * checked.
 */
import { custom, type Opt } from '../core/options/schema.js'
import { leastLoaded } from './least-loaded.js'
import { random } from './random.js'
import { roundRobin } from './round-robin.js'
import type { Strategy } from './strategy.js'

/** Built-in strategy names. */
export type StrategyName = 'round-robin' | 'least-loaded' | 'random'

const BUILT_IN: Readonly<Record<StrategyName, () => Strategy>> = {
  'round-robin': roundRobin,
  'least-loaded': leastLoaded,
  random,
}

/**
 * The `strategy` option: a built-in name (a new instance per client) or a user
 * {@link Strategy} object `{ name, createPicker }`. Its default is the client's (options.ts).
 */
export const strategyOption: Opt<Strategy | undefined> = custom<Strategy>(
  'strategy name or Strategy',
  (v, at) => {
    if (typeof v === 'string' && Object.hasOwn(BUILT_IN, v)) return BUILT_IN[v as StrategyName]()
    if (
      typeof v === 'object' &&
      v !== null &&
      typeof (v as Partial<Strategy>).createPicker === 'function' &&
      typeof (v as Partial<Strategy>).name === 'string'
    )
      return v as Strategy
    return at.fail(
      v,
      `Use one of ${Object.keys(BUILT_IN)
        .map((s) => `"${s}"`)
        .join(', ')}, or a Strategy object { name, createPicker(instances, ctx) }.`,
    )
  },
).default('least-loaded')
