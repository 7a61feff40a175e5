/**
 * Options of {@link createWayfind}, their defaults in one place, and their validation.
 */
import type { StrategyName } from './balancer/strategies.js'
import type { Strategy } from './balancer/strategy.js'
import type { Clock } from './core/clock.js'
import { checkDurationMs, checkKnownKeys, checkObject } from './core/validate.js'
import type { DispatcherOptions } from './dispatcher/options.js'
import { InvalidOptionError } from './errors.js'
import type { RegistryProvider } from './registry/provider.js'

export type { StrategyName }

/** Options of `createWayfind()`. */
export interface WayfindOptions {
  /**
   * Where instances come from and where `register()` writes: `consul({...})`, `etcd({...})`,
   * `memoryRegistry()`, or any {@link RegistryProvider}. The client closes it on `close()`.
   * @defaultValue a new `memoryRegistry()`
   */
  readonly registry?: RegistryProvider
  /**
   * How to pick an instance: a built-in name or a {@link Strategy} object.
   * @defaultValue 'least-loaded'
   */
  readonly strategy?: StrategyName | Strategy
  /**
   * How long `resolve()` and a dispatched request wait for a service that has no instance yet.
   * @defaultValue 10_000
   */
  readonly resolveTimeoutMs?: number
  /**
   * A service not used (resolved, listed or dispatched to) for this long is unwatched.
   * @defaultValue 300_000 (5 minutes)
   */
  readonly idleTtlMs?: number
  /** Dispatcher tuning: routing, pools, retries, outlier ejection. */
  readonly dispatcher?: DispatcherOptions
  /** Random source in [0, 1), for reproducible tests. @defaultValue Math.random */
  readonly random?: () => number
  /** Time source, for tests with a fake clock. @defaultValue the system clock */
  readonly clock?: Clock
}

/** Defaults, in one place. */
export const DEFAULTS = Object.freeze({
  strategy: 'least-loaded',
  resolveTimeoutMs: 10_000,
  idleTtlMs: 300_000,
})

// lru-cache arms a Node timer for the TTL (plus a little): keep it well inside Node's 2^31-1 ms
// timer range, past which a timer fires at once.
const MAX_IDLE_TTL_MS = 7 * 24 * 3_600_000

const KNOWN = [
  'registry',
  'strategy',
  'resolveTimeoutMs',
  'idleTtlMs',
  'dispatcher',
  'random',
  'clock',
] as const
const STRATEGY_NAMES: readonly StrategyName[] = ['round-robin', 'least-loaded', 'random']

/** Validated options with defaults applied (registry and strategy still to be instantiated). */
export interface ValidatedOptions {
  readonly registry: RegistryProvider | undefined
  readonly strategy: StrategyName | Strategy
  readonly resolveTimeoutMs: number
  readonly idleTtlMs: number
  readonly dispatcher: DispatcherOptions
  readonly random: (() => number) | undefined
  readonly clock: Clock | undefined
}

/** Validates {@link WayfindOptions}; throws `InvalidOptionError` naming the option and the fix. */
export function validateOptions(input: WayfindOptions | undefined): ValidatedOptions {
  const o = checkObject('options', input)
  checkKnownKeys('', o, KNOWN)

  const registry = o.registry
  if (
    registry !== undefined &&
    (typeof registry !== 'object' ||
      registry === null ||
      typeof (registry as Partial<RegistryProvider>).watch !== 'function' ||
      typeof (registry as Partial<RegistryProvider>).close !== 'function')
  )
    throw new InvalidOptionError(
      'registry',
      registry,
      'Pass consul({ url }), etcd({ hosts }), memoryRegistry(), or an object with watch() and close().',
    )

  const strategy: unknown = o.strategy ?? DEFAULTS.strategy
  if (typeof strategy === 'string') {
    if (!STRATEGY_NAMES.includes(strategy as StrategyName))
      throw new InvalidOptionError(
        'strategy',
        strategy,
        `Use one of ${STRATEGY_NAMES.map((s) => `"${s}"`).join(', ')}, or a Strategy object.`,
      )
  } else if (
    typeof strategy !== 'object' ||
    strategy === null ||
    typeof (strategy as Partial<Strategy>).createPicker !== 'function'
  ) {
    throw new InvalidOptionError(
      'strategy',
      strategy,
      'Pass a strategy name or an object with createPicker(instances, ctx).',
    )
  }

  const random = o.random
  if (random !== undefined && typeof random !== 'function')
    throw new InvalidOptionError('random', random, 'Pass a function returning a number in [0, 1).')
  const clock = o.clock
  if (
    clock !== undefined &&
    (typeof clock !== 'object' ||
      clock === null ||
      typeof (clock as Partial<Clock>).now !== 'function' ||
      typeof (clock as Partial<Clock>).setTimeout !== 'function')
  )
    throw new InvalidOptionError(
      'clock',
      clock,
      'Pass an object with now() and setTimeout(fn, ms).',
    )

  return {
    registry: registry as RegistryProvider | undefined,
    strategy: strategy as StrategyName | Strategy,
    resolveTimeoutMs:
      o.resolveTimeoutMs === undefined
        ? DEFAULTS.resolveTimeoutMs
        : checkDurationMs('resolveTimeoutMs', o.resolveTimeoutMs),
    idleTtlMs:
      o.idleTtlMs === undefined
        ? DEFAULTS.idleTtlMs
        : checkDurationMs('idleTtlMs', o.idleTtlMs, { min: 1_000, max: MAX_IDLE_TTL_MS }),
    dispatcher: checkObject('dispatcher', o.dispatcher),
    random: random as (() => number) | undefined,
    clock: clock as Clock | undefined,
  }
}
