/**
 * The dispatcher's instance pools: one per logical origin and instance address, created on first
 * use, retired when the instance leaves every service that used it or when unused for
 * `idleTimeoutMs`, and closed or destroyed with the dispatcher.
 *
 * Membership owns the pools, as in go-kit's endpoint cache (`sd/endpoint_cache.go`): survivors
 * are reused, removed instances' pools are closed gracefully (waiting and running requests
 * finish) and destroyed after `drainTimeoutMs`. Idle expiry is a used-flag sweep: lru-cache's
 * `updateAgeOnGet` with `ttlAutopurge` would re-arm a timer on every get, i.e. per request.
 *
 * Every pool has undici's `Pool` interface (`dispatch`, `close`, `destroy`, `'drain'`): wayfind's
 * own connection set (instance-pool.ts), undici's `Pool` (HTTP/2 and Pool-only options) or
 * `poolFactory`'s dispatcher. Callers never need to know which.
 */
import { Pool, type Dispatcher } from 'undici'
import type { Clock, TimerHandle } from '../core/clock.js'
import { hostPort, type Instance } from '../instance.js'
import { debug } from './debug.js'
import { InstancePool } from './instance-pool.js'
import type { ParsedDispatcherOptions } from './options.js'
import { clientOptions, poolOptions, usesOwnConnections, type PoolRoute } from './pool-options.js'

/** One pool in the map. */
interface PoolEntry {
  /** Key in the map: logical origin and instance address. */
  readonly key: string
  /** The logical origin the pool was made for (its Host). */
  readonly origin: string
  /** The instance address its connector dials. */
  readonly hostPort: string
  readonly pool: Dispatcher
  /** Services that send to this address through this origin. */
  readonly services: Set<string>
  /** Used since the last idle sweep. */
  used: boolean
  /** Closed or closing: a new request needs a new pool. */
  retired: boolean
}

/** Where to send a request to one instance through one logical origin. */
export interface Target {
  readonly instance: Instance
  /** The instance's slot in the load tracker. */
  readonly slot: number
  readonly entry: PoolEntry
}

/** A logical origin: what a pool is made for, and the targets cached for it per instance key. */
export interface PoolOrigin extends PoolRoute {
  /** `protocol//host`: the origin of its pools. */
  readonly origin: string
  /** Instance key → where to send. Dropped for an instance that left or changed. */
  readonly targets: Map<string, Target>
}

export class PoolMap {
  readonly #options: ParsedDispatcherOptions
  readonly #clock: Clock
  readonly #slotOf: (key: string) => number
  readonly #onDrain: (origin: URL) => void
  readonly #pools = new Map<string, PoolEntry>()
  /** Pools closing gracefully: destroyed with the dispatcher if they have not finished. */
  readonly #retiring = new Set<Dispatcher>()
  #idleTimer: TimerHandle | undefined
  #shutDown = false

  /**
   * @param slotOf The load tracker's slot of an instance key.
   * @param onDrain A pool that refused a request (backpressure) has room again.
   */
  constructor(
    options: ParsedDispatcherOptions,
    clock: Clock,
    slotOf: (key: string) => number,
    onDrain: (origin: URL) => void,
  ) {
    this.#options = options
    this.#clock = clock
    this.#slotOf = slotOf
    this.#onDrain = onDrain
  }

  /** Open pools (retiring ones excluded). */
  get size(): number {
    return this.#pools.size
  }

  /** Where to send to `instance` through `origin`: cached, or a pool opened now. */
  target(origin: PoolOrigin, instance: Instance): Target {
    let t = origin.targets.get(instance.key)
    if (t === undefined || t.instance !== instance || t.entry.retired) {
      t = { instance, slot: this.#slotOf(instance.key), entry: this.#entry(origin, instance) }
      origin.targets.set(instance.key, t)
    }
    t.entry.used = true
    return t
  }

  /** Open connections and requests waiting for one, over the pools of `service` at `hp`. */
  load(service: string, hp: string): { connections: number; queued: number } {
    let connections = 0
    let queued = 0
    for (const e of this.#pools.values()) {
      if (e.hostPort !== hp || !e.services.has(service)) continue
      const s = statsOf(e.pool)
      connections += s?.connected ?? 0
      queued += s?.queued ?? 0
    }
    return { connections, queued }
  }

  /** `service` now has `instances`: pools used only for addresses that left it are retired. */
  keepOnly(service: string, instances: readonly Instance[]): void {
    // Built on the first pool of this service only: a service nobody sent requests to (or a
    // client with no pools at all) costs nothing per change.
    let live: Set<string> | undefined
    for (const entry of [...this.#pools.values()]) {
      if (!entry.services.has(service)) continue
      live ??= new Set(instances.map((i) => hostPort(i)))
      if (live.has(entry.hostPort)) continue
      entry.services.delete(service)
      if (entry.services.size === 0) this.#retire(entry, 'removed')
    }
  }

  /**
   * Stops the sweep and hands over every pool, open or retiring, for the dispatcher's close or
   * destroy; the map is empty afterwards and opens no pool again.
   */
  shutdown(): Dispatcher[] {
    this.#shutDown = true
    this.#idleTimer?.clear()
    this.#idleTimer = undefined
    const pools = [...this.#pools.values()].map((e) => e.pool)
    for (const e of this.#pools.values()) e.retired = true
    this.#pools.clear()
    return [...pools, ...this.#retiring]
  }

  /** Pools still retiring (a destroy after close() must reach them too). */
  get retiring(): Dispatcher[] {
    return [...this.#retiring]
  }

  #entry(origin: PoolOrigin, instance: Instance): PoolEntry {
    const hp = hostPort(instance)
    const key = `${origin.origin} ${hp}`
    let entry = this.#pools.get(key)
    if (entry === undefined || entry.retired) {
      entry = {
        key,
        origin: origin.origin,
        hostPort: hp,
        pool: this.#open(origin, instance),
        services: new Set(),
        used: true,
        retired: false,
      }
      this.#pools.set(key, entry)
      debug('pool open %s via %s', origin.origin, hp)
      this.#armIdle()
    }
    entry.services.add(origin.service)
    return entry
  }

  #open(origin: PoolOrigin, instance: Instance): Dispatcher {
    const o = this.#options
    const options = poolOptions(o, instance, origin)
    const pool =
      o.poolFactory !== undefined
        ? o.poolFactory(origin.origin, options, instance)
        : usesOwnConnections(o.pool)
          ? new InstancePool(origin.origin, clientOptions(options), o.connections)
          : new Pool(origin.origin, options)
    // Backpressure: a pool's dispatch() may return false; relay its 'drain' as undici's
    // BalancedPool does (pool-base.js).
    pool.on('drain', (drainOrigin: URL) => {
      this.#onDrain(drainOrigin)
    })
    return pool
  }

  /** Graceful close of a pool (running requests finish), destroyed after the drain timeout. */
  #retire(entry: PoolEntry, why: string): void {
    if (entry.retired) return
    entry.retired = true
    if (this.#pools.get(entry.key) === entry) this.#pools.delete(entry.key)
    const pool = entry.pool
    this.#retiring.add(pool)
    debug('pool close %s via %s (%s)', entry.origin, entry.hostPort, why)
    const timer = this.#clock.setTimeout(() => {
      debug('pool destroy %s via %s after drain timeout', entry.origin, entry.hostPort)
      pool.destroy().catch(noop)
    }, this.#options.drainTimeoutMs)
    const done = (): void => {
      timer.clear()
      this.#retiring.delete(pool)
    }
    pool.close().then(done, done)
  }

  /** Idle pools: a pool not used for a whole interval is retired (reopened on demand). */
  #armIdle(): void {
    if (this.#idleTimer !== undefined || this.#shutDown) return
    this.#idleTimer = this.#clock.setTimeout(() => {
      this.#idleTimer = undefined
      for (const entry of [...this.#pools.values()]) {
        if (entry.used) entry.used = false
        else this.#retire(entry, 'idle')
      }
      if (this.#pools.size > 0) this.#armIdle()
    }, this.#options.idleTimeoutMs)
  }
}

/** `stats` of undici's `Pool` and of wayfind's own pools; none for another dispatcher. */
function statsOf(pool: Dispatcher): { connected?: number; queued?: number } | undefined {
  const s = (pool as { stats?: unknown }).stats
  return typeof s === 'object' && s !== null ? s : undefined
}

function noop(): void {}
