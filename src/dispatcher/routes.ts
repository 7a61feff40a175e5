/**
 * Which origins the dispatcher balances: `http(s)://<name>[:port]` whose host name the `route`
 * option (default {@link defaultRoute}) maps to a service. Answers are cached per origin string,
 * so a request costs a Map lookup, not a `new URL()`.
 */
import type { Dispatcher } from 'undici'
import type { PoolOrigin } from './pool-map.js'
import type { RequestRoute } from './request.js'

/** A balanced origin: its service, its logical origin (for its pools) and what is cached on it. */
export interface Route extends PoolOrigin, RequestRoute {
  /**
   * Which busy requests are timed, 1 in `timeMask + 1` per instance: set from the service's
   * current picker at every pick (a strategy that never reads latency needs fewer samples).
   */
  timeMask: number
}

const MAX_ROUTES = 1024

/** True for a single-label host name that is not `localhost` (and therefore not an IP). */
export function defaultRoute(hostname: string): string | undefined {
  if (
    hostname === '' ||
    hostname === 'localhost' ||
    hostname.includes('.') ||
    hostname.includes(':')
  )
    return undefined
  return hostname
}

/** Origin → route (or `null`: not balanced), bounded: cleared when it reaches 1,024 origins. */
export class RouteCache {
  readonly #routeFn: (hostname: string) => string | undefined
  readonly #routes = new Map<string, Route | null>()

  constructor(routeFn: ((hostname: string) => string | undefined) | undefined) {
    this.#routeFn = routeFn ?? defaultRoute
  }

  /** The route of a dispatch's origin, or `null` when it goes to the fallback. */
  of(origin: Dispatcher.DispatchOptions['origin']): Route | null {
    const key = typeof origin === 'string' ? origin : origin === undefined ? '' : origin.origin
    let route = this.#routes.get(key)
    if (route === undefined) {
      route = this.#compute(key)
      if (this.#routes.size >= MAX_ROUTES) this.#routes.clear()
      this.#routes.set(key, route)
    }
    return route
  }

  /** Instances of `service` that left or changed: their cached targets are dropped. */
  forget(service: string, keys: Iterable<string>): void {
    if (this.#routes.size === 0) return
    const list = [...keys]
    for (const route of this.#routes.values()) {
      if (route?.service !== service) continue
      for (const k of list) route.targets.delete(k)
    }
  }

  clear(): void {
    this.#routes.clear()
  }

  #compute(origin: string): Route | null {
    if (origin === '') return null
    let url: URL
    try {
      url = new URL(origin)
    } catch {
      return null
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null
    const service = this.#routeFn(url.hostname)
    if (service === undefined || service === '') return null
    return {
      service,
      hostname: url.hostname,
      protocol: url.protocol,
      origin: `${url.protocol}//${url.host}`,
      targets: new Map(),
      timeMask: 7,
    }
  }
}
