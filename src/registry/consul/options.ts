/**
 * Options of the Consul registry, their defaults, and their validation. Everything is checked
 * here, at construction, so that a bad option fails with an `InvalidOptionError` before any
 * request is made.
 */
import { readFileSync } from 'node:fs'
import { InvalidOptionError } from '../../errors.js'
import { resolveConsulLimits, type ConsulLimits, type ResolvedConsulLimits } from '../limits.js'

/** Which address of an instance to dial. */
export type ConsulAddressKind =
  'default' | 'lan' | 'wan' | 'lan_ipv4' | 'wan_ipv4' | 'lan_ipv6' | 'wan_ipv6'

/** Consul read consistency (docs/design/consul.md#consistency-modes). */
export type ConsulConsistency = 'default' | 'stale' | 'consistent'

/** TLS settings for an `https://` agent address. PEM contents, not file paths. */
export interface ConsulTlsOptions {
  /** CA bundle that signed the agent's certificate. @defaultValue the file named by `CONSUL_CACERT` */
  readonly ca?: string | Buffer
  /** Client certificate, for agents with `verify_incoming`. @defaultValue the file named by `CONSUL_CLIENT_CERT` */
  readonly cert?: string | Buffer
  /** Key of the client certificate. @defaultValue the file named by `CONSUL_CLIENT_KEY` */
  readonly key?: string | Buffer
  /** Name to verify the agent's certificate against. @defaultValue `CONSUL_TLS_SERVER_NAME`, else the URL host */
  readonly serverName?: string
  /** Verify the agent's certificate. @defaultValue true, or false when `CONSUL_HTTP_SSL_VERIFY=false` */
  readonly rejectUnauthorized?: boolean
}

/** Options of {@link consul}. Every duration is in milliseconds. */
export interface ConsulRegistryOptions {
  /**
   * Agent address, `http://host:port` or `https://host:port`.
   * @defaultValue `CONSUL_HTTP_ADDR`, else `http://127.0.0.1:8500`
   */
  readonly url?: string
  /**
   * ACL token. Sent only in the `X-Consul-Token` header, never in a URL, an error or debug output.
   * @defaultValue `CONSUL_HTTP_TOKEN`
   */
  readonly token?: string
  /** TLS for `https://` addresses. */
  readonly tls?: ConsulTlsOptions
  /** Environment to read the `CONSUL_*` defaults from. @defaultValue process.env */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Datacenter to query. @defaultValue the agent's own */
  readonly dc?: string
  /** Only instances carrying every one of these tags (sent as repeated `tag=`, which Consul ANDs). */
  readonly tags?: readonly string[]
  /** A Consul `filter` expression (go-bexpr), e.g. `Service.Meta.zone == "a"`. */
  readonly filter?: string
  /**
   * Only instances whose every check passes (`?passing`). When false, warning instances are kept
   * (with status `warning` and their warning weight) and critical ones are dropped client-side.
   * @defaultValue true
   */
  readonly passingOnly?: boolean
  /** @defaultValue 'default' (the leader answers) */
  readonly consistency?: ConsulConsistency
  /**
   * Which address to dial: `default` is `Service.Address || Node.Address`; a tagged address kind
   * (`lan_ipv4`, `wan`, ...) uses the service's tagged address of that kind, else
   * `Service.Address`, else the node's tagged address of that kind, else `Node.Address` (the
   * order of Consul's own WAN address translation).
   * @defaultValue 'default'
   */
  readonly addressKind?: ConsulAddressKind
  /** Blocking-query wait, sent as a Consul duration. At most 10 min (Consul's cap). @defaultValue 300_000 */
  readonly waitMs?: number
  /**
   * Most TCP connections this registry opens to the agent (watches and agent calls together).
   * Consul refuses more than 200 per client IP (`limits.http_max_conns_per_client`), and every
   * process on the host shares that budget. @defaultValue 64
   */
  readonly maxConnections?: number
  /** Negotiate HTTP/2 over TLS, so all watches share one connection. @defaultValue true */
  readonly http2?: boolean
  /** Most concurrent HTTP/2 streams (Go's server refuses more than 250). @defaultValue 200 */
  readonly maxStreams?: number
  /**
   * When more services are watched than connections (or streams) allow, each long poll is
   * shortened so that every watch gets a turn about this often. @defaultValue 10_000
   */
  readonly rotationMs?: number
  /** Timeout of non-blocking requests (registration, heartbeats, confirming reads). @defaultValue 10_000 */
  readonly requestTimeoutMs?: number
  /** Retry delays after errors: jittered exponential from `initialMs` up to `maxMs`, forever. */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number }
  /**
   * Token bucket per watch against busy loops under churn
   * (docs/design/consul.md#rate-limiting-under-churn): an answer that came back early spends a
   * token; one token comes back every `refillMs`.
   * @defaultValue `{ burstCount: 4, refillMs: 2_000 }`
   */
  readonly rateLimit?: { readonly burstCount?: number; readonly refillMs?: number }
  /** After registering, wait until the agent lists the service. @defaultValue true */
  readonly verifyRegistration?: boolean
  /**
   * For registrations without a TTL check: how often to confirm that the agent still lists the
   * service (an agent restarted without a data dir forgets it). @defaultValue 30_000
   */
  readonly reconcileIntervalMs?: number
  /** Random source for jitter, injectable for tests. @defaultValue Math.random */
  readonly random?: () => number
  /**
   * Bounds on what the agent may hand us: answer bytes (enforced while reading) and entries per
   * answer. See docs/registry-answers.md. @defaultValue `{ maxResponseBytes: 32 MiB, maxInstances: 20_000 }`
   */
  readonly limits?: ConsulLimits
}

/** TLS material ready for undici's `connect` options. */
export interface ResolvedTls {
  readonly ca?: string | Buffer
  readonly cert?: string | Buffer
  readonly key?: string | Buffer
  readonly servername?: string
  readonly rejectUnauthorized: boolean
}

/** Validated options with defaults applied. */
export interface ResolvedConsulOptions {
  /** `scheme://host:port`. */
  readonly origin: string
  /** Path prefix of the URL without a trailing slash ('' for none). */
  readonly basePath: string
  readonly https: boolean
  readonly token: string | undefined
  readonly tls: ResolvedTls | undefined
  readonly dc: string | undefined
  readonly tags: readonly string[]
  readonly filter: string | undefined
  readonly passingOnly: boolean
  readonly consistency: ConsulConsistency
  readonly addressKind: ConsulAddressKind
  readonly waitMs: number
  readonly maxConnections: number
  readonly http2: boolean
  readonly maxStreams: number
  readonly rotationMs: number
  readonly requestTimeoutMs: number
  readonly backoff: { readonly initialMs: number; readonly maxMs: number }
  readonly rateLimit: { readonly burstCount: number; readonly refillMs: number }
  readonly verifyRegistration: boolean
  readonly reconcileIntervalMs: number
  readonly random: () => number
  readonly limits: ResolvedConsulLimits
}

const KNOWN_KEYS: readonly string[] = [
  'url',
  'token',
  'tls',
  'env',
  'dc',
  'tags',
  'filter',
  'passingOnly',
  'consistency',
  'addressKind',
  'waitMs',
  'maxConnections',
  'http2',
  'maxStreams',
  'rotationMs',
  'requestTimeoutMs',
  'backoff',
  'rateLimit',
  'verifyRegistration',
  'reconcileIntervalMs',
  'random',
  'limits',
]

const ADDRESS_KINDS: readonly ConsulAddressKind[] = [
  'default',
  'lan',
  'wan',
  'lan_ipv4',
  'wan_ipv4',
  'lan_ipv6',
  'wan_ipv6',
]

/**
 * Consul's `max_query_time` default; longer waits are clamped silently by the agent
 * (docs/design/consul.md#blocking-queries).
 */
const MAX_WAIT_MS = 600_000

/** Validates `options` and applies defaults (including the `CONSUL_*` environment variables). */
export function resolveConsulOptions(options: ConsulRegistryOptions = {}): ResolvedConsulOptions {
  if (typeof options !== 'object' || (options as unknown) === null || Array.isArray(options))
    throw new InvalidOptionError(
      'options',
      options,
      'Pass an object such as { url: "http://127.0.0.1:8500" }.',
    )
  for (const key of Object.keys(options))
    if (!KNOWN_KEYS.includes(key))
      throw new InvalidOptionError(
        key,
        (options as Record<string, unknown>)[key],
        `This option does not exist; known options are: ${KNOWN_KEYS.join(', ')}.`,
      )

  const env = options.env ?? process.env
  if (typeof env !== 'object' || (env as unknown) === null)
    throw new InvalidOptionError('env', env, 'Pass an object of environment variables.')

  const { origin, basePath, https } = resolveUrl(options.url, env)
  const token = resolveToken(options.token, env)
  const tls = resolveTls(options.tls, env, https)

  const dc = optionalString('dc', options.dc)
  const filter = optionalString('filter', options.filter)
  const tags: unknown = options.tags ?? []
  if (!Array.isArray(tags) || tags.some((t: unknown) => typeof t !== 'string' || t === ''))
    throw new InvalidOptionError('tags', tags, 'Pass an array of non-empty strings.')

  const consistency = options.consistency ?? 'default'
  if (!['default', 'stale', 'consistent'].includes(consistency))
    throw new InvalidOptionError(
      'consistency',
      consistency,
      'Use "default", "stale" or "consistent".',
    )
  const addressKind = options.addressKind ?? 'default'
  if (!ADDRESS_KINDS.includes(addressKind))
    throw new InvalidOptionError(
      'addressKind',
      addressKind,
      `Use one of ${ADDRESS_KINDS.join(', ')}.`,
    )

  const backoff = optionalObject('backoff', options.backoff, ['initialMs', 'maxMs'])
  const rateLimit = optionalObject('rateLimit', options.rateLimit, ['burstCount', 'refillMs'])
  const initialMs = durationMs('backoff.initialMs', backoff.initialMs ?? 200, 1, 3_600_000)
  const maxMs = durationMs('backoff.maxMs', backoff.maxMs ?? 30_000, initialMs, 3_600_000)

  const random = options.random ?? Math.random
  if (typeof random !== 'function')
    throw new InvalidOptionError('random', random, 'Pass a function returning a number in [0, 1).')

  return {
    origin,
    basePath,
    https,
    token,
    tls,
    dc,
    tags: Object.freeze([...(tags as string[])]),
    filter,
    passingOnly: bool('passingOnly', options.passingOnly, true),
    consistency,
    addressKind,
    waitMs: durationMs('waitMs', options.waitMs ?? 300_000, 1_000, MAX_WAIT_MS),
    maxConnections: integer('maxConnections', options.maxConnections ?? 64, 2, 200),
    http2: bool('http2', options.http2, true),
    maxStreams: integer('maxStreams', options.maxStreams ?? 200, 1, 1_000),
    rotationMs: durationMs('rotationMs', options.rotationMs ?? 10_000, 1_000, MAX_WAIT_MS),
    requestTimeoutMs: durationMs(
      'requestTimeoutMs',
      options.requestTimeoutMs ?? 10_000,
      100,
      600_000,
    ),
    backoff: { initialMs, maxMs },
    rateLimit: {
      burstCount: integer('rateLimit.burstCount', rateLimit.burstCount ?? 4, 1, 1_000),
      refillMs: durationMs('rateLimit.refillMs', rateLimit.refillMs ?? 2_000, 1, 3_600_000),
    },
    verifyRegistration: bool('verifyRegistration', options.verifyRegistration, true),
    reconcileIntervalMs: durationMs(
      'reconcileIntervalMs',
      options.reconcileIntervalMs ?? 30_000,
      100,
      3_600_000,
    ),
    random,
    limits: resolveConsulLimits(options.limits),
  }
}

function resolveUrl(
  url: unknown,
  env: Readonly<Record<string, string | undefined>>,
): { origin: string; basePath: string; https: boolean } {
  let option = 'url'
  let raw: unknown = url
  if (raw === undefined && nonEmpty(env.CONSUL_HTTP_ADDR)) {
    option = 'env.CONSUL_HTTP_ADDR'
    raw = env.CONSUL_HTTP_ADDR
    // The Go client accepts a bare host:port and picks the scheme from CONSUL_HTTP_SSL (api/api.go).
    if (typeof raw === 'string' && !raw.includes('://'))
      raw = `${isTrue(env.CONSUL_HTTP_SSL) ? 'https' : 'http'}://${raw}`
  }
  raw ??= 'http://127.0.0.1:8500'
  const fix = 'Pass the agent address as "http://host:port" or "https://host:port".'
  if (typeof raw !== 'string') throw new InvalidOptionError(option, raw, fix)
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new InvalidOptionError(option, raw, fix)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new InvalidOptionError(option, raw, fix)
  if (
    parsed.username !== '' ||
    parsed.password !== '' ||
    parsed.search !== '' ||
    parsed.hash !== ''
  )
    throw new InvalidOptionError(
      option,
      `${parsed.protocol}//${parsed.host}`,
      `${fix} Credentials, queries and fragments are not allowed (use the "token" option).`,
    )
  return {
    origin: parsed.origin,
    basePath: parsed.pathname.replace(/\/+$/, ''),
    https: parsed.protocol === 'https:',
  }
}

function resolveToken(
  token: unknown,
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const option = token === undefined ? 'env.CONSUL_HTTP_TOKEN' : 'token'
  const value: unknown =
    token ?? (nonEmpty(env.CONSUL_HTTP_TOKEN) ? env.CONSUL_HTTP_TOKEN : undefined)
  if (value === undefined) return undefined
  // Never echo a token back: report only its shape.
  if (typeof value !== 'string' || value === '' || /[\r\n\0]/.test(value))
    throw new InvalidOptionError(
      option,
      typeof value === 'string' ? `<redacted, ${value.length} characters>` : value,
      'Pass the ACL token as a non-empty single-line string.',
    )
  return value
}

function resolveTls(
  tls: ConsulTlsOptions | undefined,
  env: Readonly<Record<string, string | undefined>>,
  https: boolean,
): ResolvedTls | undefined {
  if (tls !== undefined) {
    optionalObject('tls', tls, ['ca', 'cert', 'key', 'serverName', 'rejectUnauthorized'])
    if (!https) throw new InvalidOptionError('tls', tls, 'TLS options need an "https://" url.')
  }
  if (!https) return undefined
  const t = tls ?? {}
  const ca = pem('tls.ca', t.ca) ?? pemFile('env.CONSUL_CACERT', env.CONSUL_CACERT)
  const cert = pem('tls.cert', t.cert) ?? pemFile('env.CONSUL_CLIENT_CERT', env.CONSUL_CLIENT_CERT)
  const key = pem('tls.key', t.key) ?? pemFile('env.CONSUL_CLIENT_KEY', env.CONSUL_CLIENT_KEY)
  if ((cert === undefined) !== (key === undefined))
    throw new InvalidOptionError(
      cert === undefined ? 'tls.cert' : 'tls.key',
      undefined,
      'A client certificate needs both "cert" and "key".',
    )
  const servername =
    optionalString('tls.serverName', t.serverName) ??
    (nonEmpty(env.CONSUL_TLS_SERVER_NAME) ? env.CONSUL_TLS_SERVER_NAME : undefined)
  const rejectUnauthorized = bool(
    'tls.rejectUnauthorized',
    t.rejectUnauthorized,
    env.CONSUL_HTTP_SSL_VERIFY === undefined || isTrue(env.CONSUL_HTTP_SSL_VERIFY),
  )
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    ...(servername === undefined ? {} : { servername }),
    rejectUnauthorized,
  }
}

function pem(option: string, value: unknown): string | Buffer | undefined {
  if (value === undefined) return undefined
  if ((typeof value === 'string' && value !== '') || Buffer.isBuffer(value)) return value
  throw new InvalidOptionError(
    option,
    value,
    'Pass PEM contents as a string or Buffer (read the file yourself, or use the CONSUL_* variables for paths).',
  )
}

function pemFile(option: string, path: string | undefined): Buffer | undefined {
  if (!nonEmpty(path)) return undefined
  try {
    return readFileSync(path)
  } catch (err) {
    throw new InvalidOptionError(
      option,
      path,
      `The file cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); point it at a PEM file.`,
    )
  }
}

function optionalObject(
  option: string,
  value: unknown,
  known: readonly string[],
): Record<string, unknown> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidOptionError(option, value, 'Pass an object.')
  for (const key of Object.keys(value))
    if (!known.includes(key))
      throw new InvalidOptionError(
        `${option}.${key}`,
        (value as Record<string, unknown>)[key],
        `This option does not exist; known options are: ${known.join(', ')}.`,
      )
  return value as Record<string, unknown>
}

function optionalString(option: string, value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '')
    throw new InvalidOptionError(option, value, 'Pass a non-empty string, or leave it out.')
  return value
}

function bool(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new InvalidOptionError(option, value, 'Pass true or false.')
  return value
}

function integer(option: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw new InvalidOptionError(option, value, `Pass a whole number between ${min} and ${max}.`)
  return value
}

function durationMs(option: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max)
    throw new InvalidOptionError(
      option,
      value,
      `Pass a number of milliseconds between ${min} and ${max} (e.g. 5_000 for five seconds).`,
    )
  return value
}

function nonEmpty(value: string | undefined): value is string {
  return value !== undefined && value !== ''
}

function isTrue(value: string | undefined): boolean {
  // Go's strconv.ParseBool spellings (the Go client reads these variables with it).
  return value !== undefined && ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)
}
