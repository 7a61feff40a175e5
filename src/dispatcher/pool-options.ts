/**
 * How the pool of one instance is configured: its kind (wayfind's own connection set or undici's
 * `Pool`), its connector, and the options its connections get.
 *
 * Every instance pool's origin is the *logical* origin (`http://payments`) and its connector
 * dials the instance's address. So undici itself writes `Host: payments` (keeping a caller's own
 * Host, in any header shape), derives the TLS servername from the logical name, and the caller's
 * dispatch options pass through untouched: nothing is rewritten per request
 * (docs/design/dispatch.md#host-and-servername).
 *
 * Two things here copy what undici's `Pool` constructor does (lib/dispatcher/pool.js): which of
 * its options it keeps for itself, and how it builds its connector from them. The test
 * `test/unit/dispatcher/pool-options.test.ts` reads the option names that constructor
 * destructures from the installed undici and fails when they change.
 */
import { isIP } from 'node:net'
import { buildConnector, type Client, type Pool } from 'undici'
import { hostPort, type Instance } from '../instance.js'
import type { ParsedDispatcherOptions } from './options.js'

/** What a pool's connector needs to know about the logical origin. */
export interface PoolRoute {
  readonly service: string
  /** `http:` or `https:`. */
  readonly protocol: string
  /** Host name of the logical origin: the default TLS servername. */
  readonly hostname: string
}

/**
 * Options undici's `Pool` keeps for itself (`connections`, `factory`, `clientTtl`) or folds into
 * its connector (the rest), so they never reach its clients.
 */
export const POOL_ONLY: readonly string[] = [
  'connections',
  'factory',
  'clientTtl',
  'connectTimeout',
  'tls',
  'maxCachedSessions',
  'autoSelectFamily',
  'autoSelectFamilyAttemptTimeout',
]

/**
 * Options `Pool` reads for its connector and also hands on to its clients (`connect` as the built
 * connector). With {@link POOL_ONLY} these are every name `Pool`'s constructor takes apart.
 */
export const POOL_PASSED_ON: readonly string[] = ['connect', 'socketPath', 'allowH2']

/** HTTP/2 may be negotiated: one connection then carries many streams at once. */
export function mayMultiplex(pool: { allowH2?: unknown; useH2c?: unknown }): boolean {
  return pool.allowH2 === true || pool.useH2c === true
}

/**
 * True when wayfind's own connection set can serve these options. HTTP/2 (one connection carries
 * many streams, so counting requests per connection is the wrong bound) and the Pool-only options
 * `factory` and `clientTtl` keep undici's `Pool`.
 */
export function usesOwnConnections(pool: {
  allowH2?: unknown
  useH2c?: unknown
  factory?: unknown
  clientTtl?: unknown
}): boolean {
  return !mayMultiplex(pool) && pool.factory === undefined && pool.clientTtl == null
}

/** The `Pool` options of one instance's pool: the caller's, the dispatcher's bounds, its connector. */
export function poolOptions(
  o: ParsedDispatcherOptions,
  instance: Instance,
  route: PoolRoute,
): Pool.Options {
  return {
    ...o.pool,
    connections: o.connections,
    pipelining: o.pipelining,
    keepAliveTimeout: o.keepAliveTimeoutMs,
    connect: instanceConnector(o, instance, route),
  }
}

/** Client options from Pool options, as undici's `Pool` hands them to its clients. */
export function clientOptions(o: Pool.Options): Client.Options {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !POOL_ONLY.includes(k)))
}

/**
 * The connector of one instance pool: undici's own (`buildConnector`, with the TLS and socket
 * options a `Pool` would pass it, or the caller's `pool.connect` function), pointed at the
 * instance's address instead of the logical host. SNI and the certificate check use, in order:
 * the `servername` option for this instance, the request's servername (undici takes it from a
 * caller-set Host header), the logical host name.
 */
function instanceConnector(
  o: ParsedDispatcherOptions,
  instance: Instance,
  route: PoolRoute,
): buildConnector.connector {
  const p = o.pool
  const connect = p.connect
  // As undici's Pool builds its connector from these options (lib/dispatcher/pool.js).
  const build: Record<string, unknown> = {
    maxCachedSessions: p.maxCachedSessions,
    allowH2: p.allowH2,
    socketPath: p.socketPath,
    timeout: o.connectTimeoutMs,
  }
  if (typeof p.autoSelectFamily === 'boolean') {
    build.autoSelectFamily = p.autoSelectFamily
    build.autoSelectFamilyAttemptTimeout = p.autoSelectFamilyAttemptTimeout
  }
  const base: buildConnector.connector =
    typeof connect === 'function' ? connect : buildConnector({ ...build, ...connect })
  const hostname = instance.host
  const port = String(instance.port)
  const host = hostPort(instance)
  const fallbackSni = isIP(route.hostname) === 0 ? route.hostname : undefined
  const override = route.protocol === 'https:' ? o.servername?.(route.service, instance) : undefined
  return (opts, callback) => {
    const servername = override ?? opts.servername ?? fallbackSni
    base(
      servername === undefined
        ? { ...opts, hostname, host, port }
        : { ...opts, hostname, host, port, servername },
      callback,
    )
  }
}
