/**
 * Maps the client's `strategy` option to a {@link Strategy}.
 */
import { InvalidOptionError } from '../errors.js'
import { leastLoaded } from './least-loaded.js'
import { random } from './random.js'
import { roundRobin } from './round-robin.js'
import type { Strategy } from './strategy.js'

/** Built-in strategy names. */
export type StrategyName = 'round-robin' | 'least-loaded' | 'random'

/** `'round-robin' | 'least-loaded' | 'random'` or a user {@link Strategy}; default least-loaded. */
export function resolveStrategy(strategy: StrategyName | Strategy | undefined): Strategy {
  if (strategy === undefined || strategy === 'least-loaded') return leastLoaded()
  if (strategy === 'round-robin') return roundRobin()
  if (strategy === 'random') return random()
  const s: unknown = strategy
  if (
    typeof s === 'object' &&
    s !== null &&
    typeof (s as Strategy).createPicker === 'function' &&
    typeof (s as Strategy).name === 'string'
  )
    return s as Strategy
  throw new InvalidOptionError(
    'strategy',
    s,
    "Use 'least-loaded', 'round-robin', 'random', or an object { name, createPicker(instances, ctx) }.",
  )
}
