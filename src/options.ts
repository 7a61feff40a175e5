/**
 * Options of {@link createWayfind}: the public interface and its schema (defaults and checks,
 * in one place).
 */
import { strategyOption, type StrategyName } from './balancer/strategies.js'
import type { Strategy } from './balancer/strategy.js'
import type { Clock } from './core/clock.js'
import { parseOptions } from './core/options/check.js'
import { clockOption, randomSource } from './core/options/common.js'
import {
  duration,
  object,
  withMethods,
  type OutputOf,
  type SchemaFor,
} from './core/options/schema.js'
import { dispatcherOptions, type DispatcherOptions } from './dispatcher/options.js'
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
   * How long `resolve()` and a dispatched request wait for a service that has no instance yet;
   * `Infinity` waits until one comes (or the caller's signal aborts).
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

/** Defaults, in one place (the schema below reads them). */
export const DEFAULTS = Object.freeze({
  strategy: 'least-loaded',
  resolveTimeoutMs: 10_000,
  idleTtlMs: 300_000,
})

// lru-cache arms a Node timer for the TTL (plus a little): keep it well inside Node's 2^31-1 ms
// timer range, past which a timer fires at once.
const MAX_IDLE_TTL_MS = 7 * 24 * 3_600_000

/** The schema of {@link WayfindOptions}. */
export const wayfindSchema = {
  registry: withMethods<RegistryProvider>(
    ['watch', 'close'],
    'Pass consul({ url }), etcd({ hosts }), memoryRegistry(), or an object with watch() and close().',
  ),
  strategy: strategyOption.default(DEFAULTS.strategy),
  resolveTimeoutMs: duration({ infinity: true }).default(DEFAULTS.resolveTimeoutMs),
  idleTtlMs: duration({ min: 1_000, max: MAX_IDLE_TTL_MS }).default(DEFAULTS.idleTtlMs),
  dispatcher: dispatcherOptions,
  random: randomSource(),
  clock: clockOption(),
} satisfies SchemaFor<WayfindOptions>

const wayfindOptions = object(wayfindSchema, {
  fix: 'Pass an options object, e.g. { registry: consul({ url }) }.',
}).default({})

/** {@link WayfindOptions} checked, with defaults applied; `strategy` is a Strategy instance. */
export type ParsedWayfindOptions = OutputOf<typeof wayfindOptions>

/** Checks {@link WayfindOptions}; throws `InvalidOptionError` naming the option and the fix. */
export function parseWayfindOptions(input: WayfindOptions | undefined): ParsedWayfindOptions {
  return parseOptions(wayfindOptions, input, { label: 'createWayfind()' })
}
