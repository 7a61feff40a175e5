/**
 * Options of the {@link WayfindDispatcher}: the public interfaces, and their schema (defaults
 * and checks, in one place). Invalid options fail at construction with `InvalidOptionError`
 * naming `dispatcher.<path>`.
 */
import type { Dispatcher, Pool } from 'undici'
import { parseOptions } from '../core/options/check.js'
import { backoff, randomSource, type BackoffOption } from '../core/options/common.js'
import {
  custom,
  duration,
  func,
  integer,
  isPlainObject,
  list,
  number,
  object,
  orFalse,
  withMethods,
  type OutputOf,
  type SchemaFor,
} from '../core/options/schema.js'
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
  /**
   * Delay before a retry after sending: a ceiling from `initialMs` doubling up to `maxMs`,
   * jittered down to half. @defaultValue `{ initialMs: 25, maxMs: 1_000 }`
   */
  readonly backoff?: BackoffOption
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

const retrySchema = {
  connectRetries: integer(0, 10).default(2),
  sentRetries: integer(0, 10).default(2),
  statusCodes: list(integer(100, 599), {
    fix: 'Use an array of HTTP status codes, e.g. [502, 503, 504].',
  })
    .default([502, 503, 504])
    .map((codes): ReadonlySet<number> => new Set(codes)),
  backoff: backoff({ initialMs: 25, maxMs: 1_000 }),
  retryAfterMaxMs: duration({ min: 0 }).default(5_000),
} satisfies SchemaFor<RetryOptions>

function percent() {
  return number(0, 100, 'Use a percentage from 0 to 100.')
}

const outlierSchema = {
  consecutiveFailures: integer(1, 1_000_000).default(5),
  baseEjectionMs: duration().default(30_000),
  maxEjectionMs: duration().default(300_000),
  maxEjectionPercent: percent().default(10),
  panicThresholdPercent: percent().default(50),
  intervalMs: duration().default(10_000),
} satisfies SchemaFor<OutlierOptions>

/** The schema of {@link DispatcherOptions}: every default and check of the dispatcher. */
export const dispatcherSchema = {
  route: func<NonNullable<DispatcherOptions['route']>>(),
  servername: func<NonNullable<DispatcherOptions['servername']>>(),
  connections: integer(1, 10_000).default(32),
  pipelining: integer(1, 100).default(1),
  keepAliveTimeoutMs: duration().default(4_000),
  connectTimeoutMs: duration().default(10_000),
  // undici's own options: checked by undici when the pool is created.
  pool: custom<NonNullable<DispatcherOptions['pool']>>('undici Pool options', (v, at) =>
    isPlainObject(v) ? v : at.fail(v, 'Use a plain object of undici Pool options.'),
  ).default({}),
  poolFactory: func<NonNullable<DispatcherOptions['poolFactory']>>(),
  fallback: withMethods<Dispatcher>(['dispatch'], 'Use an undici Dispatcher (e.g. new Agent()).'),
  drainTimeoutMs: duration({ min: 0 }).default(30_000),
  idleTimeoutMs: duration().default(60_000),
  retry: orFalse(
    object(retrySchema, {
      renamed: { backoffInitialMs: 'backoff.initialMs', backoffMaxMs: 'backoff.maxMs' },
    }).default({}),
  ),
  outlier: orFalse(
    object(outlierSchema)
      .default({})
      // Envoy: a max_ejection_time below base_ejection_time means base.
      .map((o) =>
        o.maxEjectionMs >= o.baseEjectionMs
          ? o
          : Object.freeze({ ...o, maxEjectionMs: o.baseEjectionMs }),
      ),
  ),
  random: randomSource(),
} satisfies SchemaFor<DispatcherOptions>

/** The `dispatcher` option of `createWayfind()`, and what the dispatcher's constructor runs. */
export const dispatcherOptions = object(dispatcherSchema).default({})

/** {@link DispatcherOptions} checked, with defaults applied. Frozen. */
export type ParsedDispatcherOptions = OutputOf<typeof dispatcherOptions>
/** {@link RetryOptions} checked, with defaults applied. */
export type ParsedRetryOptions = NonNullable<ParsedDispatcherOptions['retry']>
/** {@link OutlierOptions} checked, with defaults applied. */
export type ParsedOutlierOptions = NonNullable<ParsedDispatcherOptions['outlier']>

/**
 * Checks dispatcher options and applies defaults; an already parsed object is returned as is.
 * Throws `InvalidOptionError` naming `dispatcher.<path>`.
 */
export function parseDispatcherOptions(
  options: DispatcherOptions | ParsedDispatcherOptions | undefined,
): ParsedDispatcherOptions {
  return parseOptions(dispatcherOptions, options, {
    label: 'the dispatcher',
    path: 'dispatcher',
  })
}
