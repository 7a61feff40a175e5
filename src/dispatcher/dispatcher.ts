/**
 * WayfindDispatcher: an undici v7 `Dispatcher` that sends `http://<service>/...` to a picked
 * instance of the service, keeping the logical `Host` header. Its own jobs: routing (which
 * origins are balanced), picking for a request, the lifecycle (close, destroy) and stats.
 *
 * Why a Dispatcher subclass and not `BalancedPool` or `compose()` over an `Agent`: BalancedPool
 * is error-penalty WRR with an open recovery bug (undici #4839), and an interceptor over Agent
 * makes v7 re-encode headers for legacy handlers and offers no way to close one origin's pool
 * (docs/design/dispatch.md#why-a-custom-dispatcher).
 *
 * The rest lives beside it, one job per file:
 * - request.ts: one request's life (state, attempts, retries, timers, the caller's abort), in
 *   the shape of undici's RetryHandler. It calls back here only to pick and to send.
 * - pool-map.ts: the instance pools (created on demand, retired when their instance leaves or
 *   idles, drained on close); pool-options.ts configures one; instance-pool.ts is wayfind's own.
 * - routes.ts: origin → service, cached. outlier.ts: ejection. debug.ts: diagnostics channels.
 *
 * Request path (all synchronous when the service has instances): route (cached per origin) →
 * a request handler → `pick` here (`picker.pick({ exclude: ejected })`) → `send` here (the
 * instance's pool for this origin, in-flight +1) → the pool.
 */
import { setMaxListeners } from 'node:events'
import { Agent, Dispatcher } from 'undici'
import type { CallOutcome, DefaultLoadTracker } from '../balancer/load-tracker.js'
import type { PickContext, PickResult } from '../balancer/strategy.js'
import type { Clock, TimerHandle } from '../core/clock.js'
import type { ServiceDirectory } from '../core/directory.js'
import { ClosedError } from '../errors.js'
import type { ChangeEvent, EventHub } from '../events.js'
import { hostPort, type Instance } from '../instance.js'
import { debug, pickChannel, retryChannel } from './debug.js'
import {
  parseDispatcherOptions,
  type DispatcherOptions,
  type ParsedDispatcherOptions,
} from './options.js'
import { OutlierDetector } from './outlier.js'
import type { PooledHandler } from './instance-pool.js'
import { PoolMap } from './pool-map.js'
import { mayMultiplex } from './pool-options.js'
import {
  isModernHandler,
  LegacyRequest,
  ModernRequest,
  type RequestHandler,
  type RequestSide,
  type RetryPolicy,
} from './request.js'
import { RouteCache, type Route } from './routes.js'
import { callbackOrPromise, destroyArgs } from './callback-or-promise.js'

export { defaultRoute } from './routes.js'

/** Load and health of one instance, as the dispatcher sees it. */
export interface InstanceStats {
  readonly key: string
  readonly id: string
  readonly host: string
  readonly port: number
  readonly weight: number
  /** Requests sent and not yet ended. */
  readonly inflight: number
  /** Peak-EWMA latency estimate now, in ms (the default RTT before any sample). */
  readonly latencyMs: number
  readonly consecutiveFailures: number
  readonly ejected: boolean
  /** Times ejected recently (the ejection-time multiplier). */
  readonly ejectCount: number
  /** Remaining ejection, in ms; 0 when not ejected. */
  readonly ejectedForMs: number
  /** Open connections to the instance, over its pools (one per logical origin used). */
  readonly connections: number
  /**
   * Requests waiting for one of its connections because all are busy (counted in `inflight`).
   * Persistently above 0 means `connections` is too low for the load.
   */
  readonly queued: number
}

/** {@link WayfindDispatcher.stats} of one service. */
export interface ServiceStats {
  readonly service: string
  readonly instances: readonly InstanceStats[]
  readonly ejected: number
  /** Too few healthy instances: ejections are ignored. */
  readonly panic: boolean
}

/**
 * The load-balancing dispatcher. Hand it to `fetch(url, { dispatcher })`, `undici.request` or
 * `stream`; it never installs itself globally.
 */
export class WayfindDispatcher extends Dispatcher {
  readonly #directory: ServiceDirectory
  readonly #options: ParsedDispatcherOptions
  readonly #load: DefaultLoadTracker
  readonly #clock: Clock
  readonly #outlier: OutlierDetector | undefined
  readonly #fallback: Dispatcher
  readonly #ownFallback: boolean
  readonly #routes: RouteCache
  readonly #pools: PoolMap
  /** Aborted by close()/destroy(): requests waiting for an instance or a backoff fail with it. */
  readonly #shutdown = new AbortController()
  /** What every request of this dispatcher gets to call back (one object, built once). */
  readonly #side: RequestSide
  /** Requests one instance's pool carries at once; pickers prefer instances below it. */
  readonly #capacity: number
  /** The context of every first pick without ejections: built once, the hot path allocates none. */
  readonly #pickCtx: PickContext
  readonly #offChange: () => void
  #closing: Promise<void> | undefined
  #destroyed = false
  /** Every pool open or draining when close()/destroy() started. */
  #shutdownPools: Dispatcher[] = []

  constructor(
    directory: ServiceDirectory,
    options: DispatcherOptions | ParsedDispatcherOptions = {},
    hub?: EventHub,
  ) {
    super()
    const o = parseDispatcherOptions(options)
    this.#directory = directory
    this.#options = o
    const load = (this.#load = directory.load)
    this.#clock = directory.clock
    this.#routes = new RouteCache(o.route)
    this.#fallback = o.fallback ?? new Agent()
    this.#ownFallback = o.fallback === undefined
    this.#outlier =
      o.outlier === undefined
        ? undefined
        : new OutlierDetector(o.outlier, this.#clock, hub, (_service, key) => {
            load.resetFailures(key)
          })
    this.#pools = new PoolMap(
      o,
      this.#clock,
      (key) => load.record(key).slot,
      (origin) => {
        this.emit('drain', origin)
      },
    )
    // HTTP/2 multiplexes streams over each connection, so connections × pipelining is no bound
    // there (0: pickers ignore capacity).
    this.#capacity = mayMultiplex(o.pool) ? 0 : o.connections * o.pipelining
    this.#pickCtx = { exclude: undefined, capacity: this.#capacity }
    // One listener per request waiting for an instance or a backoff, removed when its wait ends:
    // many at once is normal under load, not a leak.
    setMaxListeners(Infinity, this.#shutdown.signal)
    this.#side = this.#makeSide()
    this.#offChange = directory.onChange((e) => {
      this.#onChange(e)
    })
  }

  get closed(): boolean {
    return this.#closing !== undefined
  }

  get destroyed(): boolean {
    return this.#destroyed
  }

  override dispatch(
    opts: Dispatcher.DispatchOptions,
    handler: Dispatcher.DispatchHandler,
  ): boolean {
    if (typeof handler !== 'object' || (handler as unknown) === null)
      throw new TypeError('handler must be an object')
    try {
      if (this.#closing !== undefined) throw new ClosedError('WayfindDispatcher.dispatch')
      const route = this.#routes.of(opts.origin)
      if (route === null) return this.#fallback.dispatch(opts, handler)
      const request = isModernHandler(handler)
        ? new ModernRequest(opts, route, this.#side, handler)
        : new LegacyRequest(opts, route, this.#side, handler)
      return request.start()
    } catch (err) {
      // Dispatcher contract (undici dispatcher-base.js): errors go to the handler, not the caller.
      const e = err instanceof Error ? err : new Error(String(err))
      // eslint-disable-next-line @typescript-eslint/no-deprecated -- legacy handlers only have onError
      if (typeof handler.onError === 'function') handler.onError(e)
      else if (typeof handler.onResponseError === 'function')
        handler.onResponseError(null as unknown as Dispatcher.DispatchController, e)
      else throw e
      return false
    }
  }

  /**
   * The dispatcher as an interceptor, for `agent.compose(wf.interceptor())`: service origins
   * are balanced here, every other origin continues down the chain. Costs more than using the
   * dispatcher directly: compose wraps legacy handlers (request, fetch) in undici's WrapHandler,
   * which re-encodes every response header (docs/design/dispatch.md#handler-styles).
   */
  interceptor(): Dispatcher.DispatcherComposeInterceptor {
    return (dispatch) => (opts, handler) =>
      this.#routes.of(opts.origin) === null ? dispatch(opts, handler) : this.dispatch(opts, handler)
  }

  /** Per-instance load and ejection of `service` (starts its watch if not started). */
  stats(service: string): ServiceStats {
    const instances = this.#directory.picker(service).instances
    const now = this.#clock.now()
    const list = instances.map((i): InstanceStats => {
      const rec = this.#load.record(i.key)
      const o = this.#outlier?.info(service, i.key)
      const { connections, queued } = this.#pools.load(service, hostPort(i))
      return {
        key: i.key,
        id: i.id,
        host: i.host,
        port: i.port,
        weight: i.weight,
        inflight: rec.inflight,
        latencyMs: rec.latencyMs(now),
        consecutiveFailures: rec.consecutiveFailures,
        ejected: o?.ejected ?? false,
        ejectCount: o?.ejectCount ?? 0,
        ejectedForMs: o?.ejectedForMs ?? 0,
        connections,
        queued,
      }
    })
    const ejected = this.#outlier?.ejectedCount(service) ?? 0
    return {
      service,
      instances: list,
      ejected,
      panic: ejected > 0 && (this.#outlier?.isPanic(ejected, instances.length) ?? false),
    }
  }

  /** Number of open instance pools (retiring ones excluded). */
  get poolCount(): number {
    return this.#pools.size
  }

  /** Graceful: queued requests finish; bounded by `drainTimeoutMs`, then pools are destroyed. */
  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | undefined {
    this.#closing ??= this.#close()
    return callbackOrPromise(this.#closing, callback)
  }

  /** Aborts every request in flight and closes every pool at once. */
  override destroy(err: Error | null, callback: () => void): void
  override destroy(callback: () => void): void
  override destroy(err?: Error | null): Promise<void>
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | undefined {
    const { err, callback } = destroyArgs(a, b)
    return callbackOrPromise(this.#destroy(err), callback)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** Picks avoiding ejected instances and `exclude` (instances tried); see RequestSide.pick. */
  #pick(route: Route, exclude: ReadonlySet<string> | undefined, allowTried: boolean): PickResult {
    const service = route.service
    const picker = this.#directory.picker(service)
    // Two clock reads buy a latency sample: 1 busy request in 8 per instance for a strategy
    // that reads latency, 1 in 16 (enough for stats()) for one that does not.
    route.timeMask = picker.usesLatency === false ? 15 : 7
    const ejected = this.#outlier?.excludeFor(service, picker.instances.length)
    const capacity = this.#capacity
    const withoutTried: PickContext =
      ejected === undefined ? this.#pickCtx : { exclude: ejected, capacity }
    if (exclude === undefined) return picker.pick(withoutTried)
    const all = new Set(exclude)
    if (ejected !== undefined) for (const k of ejected) all.add(k)
    const result = picker.pick({ exclude: all, capacity })
    return result.kind === 'fail' && allowTried ? picker.pick(withoutTried) : result
  }

  /** Sends an attempt of `request` to `instance`'s pool for the request's origin. */
  #send(request: RequestHandler, instance: Instance): boolean {
    // Routes are made by the route cache only, so the cast restores what was put in.
    const route = request.route as Route
    const t = this.#pools.target(route, instance)
    const slot = t.slot
    request.track(slot, this.#load.shouldTime(slot, route.timeMask))
    this.#load.startSlot(slot)
    if (pickChannel.hasSubscribers)
      pickChannel.publish({ service: route.service, instance, attempt: request.attempts })
    // The caller's options as they are: the pool's origin already carries the logical Host.
    const handler: PooledHandler = request
    return t.entry.pool.dispatch(request.opts, handler)
  }

  #makeSide(): RequestSide {
    const retry = this.#options.retry
    const random = this.#options.random
    const policy: RetryPolicy = {
      connectRetries: retry?.connectRetries ?? 0,
      sentRetries: retry?.sentRetries ?? 0,
      statusCodes: retry?.statusCodes,
      retryAfterMaxMs: retry?.retryAfterMaxMs ?? 0,
      backoffMs: (n) => {
        // Jittered exponential: a random point in the upper half of the current ceiling.
        const ceiling = Math.min(
          retry?.backoff.maxMs ?? 0,
          (retry?.backoff.initialMs ?? 0) * 2 ** Math.max(0, n - 1),
        )
        return Math.round(ceiling / 2 + (random() * ceiling) / 2)
      },
    }
    const load = this.#load
    return {
      clock: this.#clock,
      retry: policy,
      shutdown: this.#shutdown.signal,
      pick: (request, exclude, allowTried) =>
        this.#pick(request.route as Route, exclude, allowTried),
      send: (request, instance) => this.#send(request, instance),
      attemptEnded: (request, instance, slot, outcome) => {
        load.endSlot(slot, outcome)
        this.#reportOutcome(request.route.service, instance, slot, outcome)
      },
      observe: (slot, rttMs, now) => {
        load.observeSlot(slot, rttMs, now)
      },
      waitForInstance: async (service, signal) => {
        await this.#directory.waitForPicker(service, {
          timeoutMs: this.#directory.resolveTimeoutMs,
          signal,
        })
      },
      retrying: (request, reason, delayMs) => {
        const service = request.route.service
        const instance = request.instance
        if (retryChannel.hasSubscribers)
          retryChannel.publish({
            service,
            instance,
            attempt: request.attempts + 1,
            reason,
            delayMs,
          })
        debug('retry %s in %d ms after %s from %s', service, delayMs, reason, instance?.key)
      },
    }
  }

  /** Outlier glue: enough failures in a row report the instance for ejection. */
  #reportOutcome(service: string, instance: Instance, slot: number, outcome: CallOutcome): void {
    const outlier = this.#outlier
    if (outcome !== 'failure' || outlier === undefined || this.#closing !== undefined) return
    const failures = this.#load.failuresOf(slot)
    if (failures < (this.#options.outlier?.consecutiveFailures ?? Infinity)) return
    if (!this.#load.has(instance.key)) return // already left its service
    outlier.reportFailure(
      service,
      instance,
      failures,
      this.#directory.picker(service).instances.length,
    )
  }

  /** Membership changed: forget what was cached for instances that left or changed. */
  #onChange(e: ChangeEvent): void {
    if (this.#closing !== undefined) return
    if (e.removed.length === 0 && e.updated.length === 0) return
    this.#routes.forget(
      e.service,
      [...e.removed, ...e.updated].map((i) => i.key),
    )
    for (const i of e.removed) {
      this.#outlier?.remove(e.service, i.key)
      this.#load.delete(i.key)
    }
    this.#pools.keepOnly(e.service, e.instances)
  }

  /** Stops everything that runs on its own; returns every pool, open or retiring. */
  #shutdownState(err: Error): Dispatcher[] {
    this.#offChange()
    // Requests waiting for an instance or a backoff fail with `err` (request.ts).
    this.#shutdown.abort(err)
    this.#outlier?.close()
    this.#routes.clear()
    this.#shutdownPools = this.#pools.shutdown()
    return this.#shutdownPools
  }

  async #close(): Promise<void> {
    const pools = this.#shutdownState(new ClosedError('WayfindDispatcher.dispatch'))
    const all = this.#ownFallback ? [...pools, this.#fallback] : pools
    let timer: TimerHandle | undefined
    const bounded = new Promise<void>((resolve) => {
      timer = this.#clock.setTimeout(() => {
        debug('close: drain timeout, destroying %d pools', all.length)
        Promise.allSettled(all.map((p) => p.destroy())).then(() => {
          resolve()
        }, noop)
      }, this.#options.drainTimeoutMs)
    })
    await Promise.race([Promise.allSettled(all.map((p) => p.close())), bounded])
    timer?.clear()
  }

  async #destroy(err: Error | null): Promise<void> {
    this.#destroyed = true
    const reason = err ?? new ClosedError('WayfindDispatcher.destroy')
    const pools =
      this.#closing === undefined
        ? this.#shutdownState(reason)
        : [...this.#shutdownPools, ...this.#pools.retiring]
    this.#closing ??= Promise.resolve()
    const all = this.#ownFallback ? [...pools, this.#fallback] : pools
    await Promise.allSettled(all.map((p) => p.destroy(err)))
  }
}

function noop(): void {}
