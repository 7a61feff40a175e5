/**
 * Options of the {@link WayfindDispatcher}, their defaults and their validation. Invalid options
 * fail at construction with `InvalidOptionError(option, received, fix)`.
 */
import type { Dispatcher, Pool } from 'undici'
import { InvalidOptionError } from '../errors.js'
import type { Instance } from '../instance.js'

/** Retries to another instance. */
export interface RetryOptions {
  /**
   * Re-dispatches of a request that failed before a byte was written (connect refused, connect
   * timeout, socket error before the request started). Safe for every method and body.
   * @defaultValue 2
   */
  readonly connectRetries?: number
  /**
   * Retries of an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) with a replayable body
   * (none, string, bytes) after it was sent: on a status in `statusCodes` or a connection reset.
   * @defaultValue 2
   */
  readonly sentRetries?: number
  /** Statuses retried (idempotent requests only). @defaultValue [502, 503, 504] */
  readonly statusCodes?: readonly number[]
  /** First backoff ceiling before a retry after sending; jittered down to half. @defaultValue 25 */
  readonly backoffInitialMs?: number
  /** Largest backoff ceiling. @defaultValue 1_000 */
  readonly backoffMaxMs?: number
  /** A `Retry-After` longer than this is not waited for: the response goes to the caller. @defaultValue 5_000 */
  readonly retryAfterMaxMs?: number
}

/** Passive outlier ejection; the defaults are Envoy's (`outlier_detection.proto`). */
export interface OutlierOptions {
  /** Consecutive failures (5xx or local errors) that eject an instance. @defaultValue 5 */
  readonly consecutiveFailures?: number
  /** Ejection time is `baseEjectionMs × times ejected`. @defaultValue 30_000 */
  readonly baseEjectionMs?: number
  /** Cap of the ejection time. @defaultValue 300_000 */
  readonly maxEjectionMs?: number
  /** At most this share of a service's instances is ejected, but always at least one. @defaultValue 10 */
  readonly maxEjectionPercent?: number
  /** Below this share of healthy instances ejections are ignored (panic mode). @defaultValue 50 */
  readonly panicThresholdPercent?: number
  /** Each interval an instance not ejected forgets one past ejection. @defaultValue 10_000 */
  readonly intervalMs?: number
}

/** Options of the dispatcher (`createWayfind({ dispatcher })`). */
export interface DispatcherOptions {
  /**
   * Maps a request's hostname to a service name, or `undefined` to pass the request through to
   * `fallback`. Default: a single-label hostname (`payments`) that is not `localhost` is a
   * service; dotted names, IPs and `localhost` pass through.
   */
  readonly route?: (hostname: string) => string | undefined
  /**
   * TLS servername (SNI and certificate check) for `https://<service>` requests to an instance.
   * Default: undici derives it from the Host header, i.e. the logical service name; return a
   * name when certificates name something else (e.g. the instance host).
   */
  readonly servername?: (service: string, instance: Instance) => string | undefined
  /** Connections per instance pool (bounded on purpose; undici's default is unlimited). @defaultValue 32 */
  readonly connections?: number
  /** Requests pipelined per connection. @defaultValue 1 */
  readonly pipelining?: number
  /** Idle keep-alive of a connection. @defaultValue 4_000 */
  readonly keepAliveTimeoutMs?: number
  /** TCP/TLS connect timeout; a timeout before sending is retried on another instance. @defaultValue 10_000 */
  readonly connectTimeoutMs?: number
  /**
   * Extra undici options for every instance pool (e.g. `connect: { ca }`, `headersTimeout`),
   * given to each connection's `Client`. With `allowH2`, `useH2c`, `factory` or `clientTtl` the
   * instance pool is an undici `Pool` (HTTP/2 multiplexes, the others are Pool-only).
   */
  readonly pool?: Omit<Pool.Options, 'connections' | 'pipelining'>
  /**
   * Creates the pool of one instance for one logical origin; for tests and custom transports.
   * `origin` is the logical origin (`http://payments`, whose Host the pool writes) and
   * `options.connect` dials `instance`. Default: wayfind's own set of undici `Client`s
   * (docs/dispatcher.md, Pools).
   */
  readonly poolFactory?: (origin: string, options: Pool.Options, instance: Instance) => Dispatcher
  /** Where non-service origins go. Default: a private undici `Agent`, closed with the dispatcher. */
  readonly fallback?: Dispatcher
  /** A removed instance's pool closes gracefully, then is destroyed after this. @defaultValue 30_000 */
  readonly drainTimeoutMs?: number
  /** The pool of an instance unused for this long is closed (reopened on demand). @defaultValue 60_000 */
  readonly idleTimeoutMs?: number
  /** Retries to another instance, or `false` to disable them. */
  readonly retry?: RetryOptions | false
  /** Passive outlier ejection, or `false` to disable it. */
  readonly outlier?: OutlierOptions | false
  /** Random source for backoff jitter. @defaultValue Math.random */
  readonly random?: () => number
}

/** {@link RetryOptions} with defaults applied. */
export interface ResolvedRetryOptions {
  readonly connectRetries: number
  readonly sentRetries: number
  readonly statusCodes: ReadonlySet<number>
  readonly backoffInitialMs: number
  readonly backoffMaxMs: number
  readonly retryAfterMaxMs: number
}

/** {@link OutlierOptions} with defaults applied. */
export interface ResolvedOutlierOptions {
  readonly consecutiveFailures: number
  readonly baseEjectionMs: number
  readonly maxEjectionMs: number
  readonly maxEjectionPercent: number
  readonly panicThresholdPercent: number
  readonly intervalMs: number
}

/** Validated {@link DispatcherOptions} with defaults. */
export interface ResolvedDispatcherOptions {
  readonly route: ((hostname: string) => string | undefined) | undefined
  readonly servername: ((service: string, instance: Instance) => string | undefined) | undefined
  readonly connections: number
  readonly pipelining: number
  readonly keepAliveTimeoutMs: number
  readonly connectTimeoutMs: number
  readonly pool: Omit<Pool.Options, 'connections' | 'pipelining'>
  readonly poolFactory:
    ((origin: string, options: Pool.Options, instance: Instance) => Dispatcher) | undefined
  readonly fallback: Dispatcher | undefined
  readonly drainTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly retry: ResolvedRetryOptions | undefined
  readonly outlier: ResolvedOutlierOptions | undefined
  readonly random: () => number
  /** Marks an already-validated object so validating twice is free. */
  readonly resolved: true
}

const KNOWN = new Set([
  'route',
  'servername',
  'connections',
  'pipelining',
  'keepAliveTimeoutMs',
  'connectTimeoutMs',
  'pool',
  'poolFactory',
  'fallback',
  'drainTimeoutMs',
  'idleTimeoutMs',
  'retry',
  'outlier',
  'random',
  'resolved',
])

function int(
  path: string,
  v: unknown,
  dflt: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new InvalidOptionError(
      path,
      v,
      `Use an integer from ${min} to ${max === Number.MAX_SAFE_INTEGER ? 'any' : max}.`,
    )
  return v
}

function ms(path: string, v: unknown, dflt: number, min = 1): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min)
    throw new InvalidOptionError(
      path,
      v,
      `Use a number of milliseconds ≥ ${min} (durations are numbers ending in Ms).`,
    )
  return v
}

function fn(path: string, v: unknown): ((...args: never[]) => unknown) | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'function') throw new InvalidOptionError(path, v, 'Use a function.')
  return v as (...args: never[]) => unknown
}

function obj(path: string, v: unknown): Record<string, unknown> | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new InvalidOptionError(path, v, 'Use a plain object.')
  return v as Record<string, unknown>
}

function percent(path: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100)
    throw new InvalidOptionError(path, v, 'Use a percentage from 0 to 100.')
  return v
}

/** Validates `options` and applies defaults. Throws `InvalidOptionError` naming the bad field. */
export function validateDispatcherOptions(
  options: DispatcherOptions | ResolvedDispatcherOptions | undefined,
): ResolvedDispatcherOptions {
  if (
    options !== undefined &&
    (options as unknown as Partial<ResolvedDispatcherOptions>).resolved === true
  )
    return options as unknown as ResolvedDispatcherOptions
  const o = obj('dispatcher', options) ?? {}
  for (const k of Object.keys(o))
    if (!KNOWN.has(k))
      throw new InvalidOptionError(
        `dispatcher.${k}`,
        o[k],
        `Unknown option; known: ${[...KNOWN].filter((x) => x !== 'resolved').join(', ')}.`,
      )

  const retryIn = o.retry === false ? false : (obj('dispatcher.retry', o.retry) ?? {})
  let retry: ResolvedRetryOptions | undefined
  if (retryIn !== false) {
    const codes = retryIn.statusCodes ?? [502, 503, 504]
    if (
      !Array.isArray(codes) ||
      codes.some((c) => typeof c !== 'number' || !Number.isInteger(c) || c < 100 || c > 599)
    )
      throw new InvalidOptionError(
        'dispatcher.retry.statusCodes',
        codes,
        'Use an array of HTTP status codes, e.g. [502, 503, 504].',
      )
    const initial = ms('dispatcher.retry.backoffInitialMs', retryIn.backoffInitialMs, 25)
    const max = ms('dispatcher.retry.backoffMaxMs', retryIn.backoffMaxMs, 1_000)
    if (max < initial)
      throw new InvalidOptionError(
        'dispatcher.retry.backoffMaxMs',
        max,
        `Use a value ≥ backoffInitialMs (${initial}).`,
      )
    retry = {
      connectRetries: int('dispatcher.retry.connectRetries', retryIn.connectRetries, 2, 0, 10),
      sentRetries: int('dispatcher.retry.sentRetries', retryIn.sentRetries, 2, 0, 10),
      statusCodes: new Set(codes as number[]),
      backoffInitialMs: initial,
      backoffMaxMs: max,
      retryAfterMaxMs: ms('dispatcher.retry.retryAfterMaxMs', retryIn.retryAfterMaxMs, 5_000, 0),
    }
  }

  const outIn = o.outlier === false ? false : (obj('dispatcher.outlier', o.outlier) ?? {})
  let outlier: ResolvedOutlierOptions | undefined
  if (outIn !== false) {
    const base = ms('dispatcher.outlier.baseEjectionMs', outIn.baseEjectionMs, 30_000)
    outlier = {
      consecutiveFailures: int(
        'dispatcher.outlier.consecutiveFailures',
        outIn.consecutiveFailures,
        5,
        1,
      ),
      baseEjectionMs: base,
      // Envoy: max_ejection_time below base_ejection_time means base.
      maxEjectionMs: Math.max(
        base,
        ms('dispatcher.outlier.maxEjectionMs', outIn.maxEjectionMs, 300_000),
      ),
      maxEjectionPercent: percent(
        'dispatcher.outlier.maxEjectionPercent',
        outIn.maxEjectionPercent,
        10,
      ),
      panicThresholdPercent: percent(
        'dispatcher.outlier.panicThresholdPercent',
        outIn.panicThresholdPercent,
        50,
      ),
      intervalMs: ms('dispatcher.outlier.intervalMs', outIn.intervalMs, 10_000),
    }
  }

  const fallback = o.fallback
  if (
    fallback !== undefined &&
    (typeof fallback !== 'object' ||
      fallback === null ||
      typeof (fallback as Dispatcher).dispatch !== 'function')
  )
    throw new InvalidOptionError(
      'dispatcher.fallback',
      fallback,
      'Use an undici Dispatcher (e.g. new Agent()).',
    )

  return {
    route: fn('dispatcher.route', o.route) as ResolvedDispatcherOptions['route'],
    servername: fn(
      'dispatcher.servername',
      o.servername,
    ) as ResolvedDispatcherOptions['servername'],
    connections: int('dispatcher.connections', o.connections, 32, 1, 10_000),
    pipelining: int('dispatcher.pipelining', o.pipelining, 1, 1, 100),
    keepAliveTimeoutMs: ms('dispatcher.keepAliveTimeoutMs', o.keepAliveTimeoutMs, 4_000),
    connectTimeoutMs: ms('dispatcher.connectTimeoutMs', o.connectTimeoutMs, 10_000),
    pool: obj('dispatcher.pool', o.pool) ?? {},
    poolFactory: fn(
      'dispatcher.poolFactory',
      o.poolFactory,
    ) as ResolvedDispatcherOptions['poolFactory'],
    fallback: fallback as Dispatcher | undefined,
    drainTimeoutMs: ms('dispatcher.drainTimeoutMs', o.drainTimeoutMs, 30_000, 0),
    idleTimeoutMs: ms('dispatcher.idleTimeoutMs', o.idleTimeoutMs, 60_000),
    retry,
    outlier,
    random: (fn('dispatcher.random', o.random) as (() => number) | undefined) ?? Math.random,
    resolved: true,
  }
}
