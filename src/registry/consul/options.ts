/**
 * Options of the Consul registry: the public interfaces, their schema (defaults and checks, in
 * one place), and the `CONSUL_*` environment defaults. Everything is checked at construction,
 * so a bad option fails with an `InvalidOptionError` before any request is made.
 */
import { readFileSync } from 'node:fs'
import { OptionContext, parseOptions } from '../../core/options/check.js'
import { backoff, pem, randomSource, type BackoffOption } from '../../core/options/common.js'
import {
  boolean,
  custom,
  duration,
  integer,
  isPlainObject,
  list,
  object,
  oneOf,
  string,
  type Opt,
  type OutputOf,
  type SchemaFor,
} from '../../core/options/schema.js'
import { consulLimits, type ConsulLimits } from '../limits.js'

/** Which address of an instance to dial. */
export type ConsulAddressKind =
  'default' | 'lan' | 'wan' | 'lan_ipv4' | 'wan_ipv4' | 'lan_ipv6' | 'wan_ipv6'

/** Consul read consistency (`?stale`, `?consistent`; docs/design/consul.md#consistency-modes). */
export type ConsulConsistency = 'default' | 'stale' | 'consistent'

/** TLS settings for an `https://` agent address. PEM contents, not file paths. */
export interface ConsulTlsOptions {
  /** CA bundle that signed the agent's certificate. @defaultValue the file named by `CONSUL_CACERT` */
  readonly ca?: string | Buffer
  /** Client certificate, for agents with `verify_incoming`. @defaultValue the file named by `CONSUL_CLIENT_CERT` */
  readonly cert?: string | Buffer
  /** Key of the client certificate; never quoted in errors. @defaultValue the file named by `CONSUL_CLIENT_KEY` */
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
  /** Datacenter to query (sent as `?dc=`). @defaultValue the agent's own */
  readonly datacenter?: string
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
  /**
   * Retry delays after errors: jittered exponential from `initialMs` up to `maxMs`, forever.
   * @defaultValue `{ initialMs: 200, maxMs: 30_000 }`
   */
  readonly backoff?: BackoffOption
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

/**
 * Consul's `max_query_time` default; longer waits are clamped silently by the agent
 * (docs/design/consul.md#blocking-queries).
 */
const MAX_WAIT_MS = 600_000

const URL_FIX = 'Pass the agent address as "http://host:port" or "https://host:port".'

/** An agent address: scheme, host and port, an optional path prefix; nothing else. */
const agentUrl = string({ fix: URL_FIX }).map((raw, at) => {
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    return at.fail(raw, URL_FIX)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return at.fail(raw, URL_FIX)
  if (
    parsed.username !== '' ||
    parsed.password !== '' ||
    parsed.search !== '' ||
    parsed.hash !== ''
  )
    return at.fail(
      raw,
      `${URL_FIX} Credentials, queries and fragments are not allowed (use the "token" option).`,
    )
  return {
    origin: parsed.origin,
    basePath: parsed.pathname.replace(/\/+$/, ''),
    https: parsed.protocol === 'https:',
  }
})

const token = string({
  singleLine: true,
  fix: 'Pass the ACL token as a non-empty single-line string.',
}).secret()

const tlsSchema = {
  ca: pem,
  cert: pem,
  key: pem.secret(),
  serverName: string(),
  rejectUnauthorized: boolean(),
} satisfies SchemaFor<ConsulTlsOptions>

/** The schema of {@link ConsulRegistryOptions}: every default and check of `consul()`. */
export const consulSchema = {
  // url, token and tls fall back to the CONSUL_* variables of `env` (see parseConsulOptions).
  url: agentUrl,
  token,
  tls: object(tlsSchema),
  env: custom<Readonly<Record<string, string | undefined>>>('environment', (v, at) =>
    isPlainObject(v)
      ? (v as Record<string, string | undefined>)
      : at.fail(v, 'Pass an object of environment variables.'),
  ).default(process.env),
  datacenter: string(),
  tags: list(string(), { fix: 'Pass an array of non-empty strings.' }).default([]),
  filter: string(),
  passingOnly: boolean().default(true),
  consistency: oneOf(['default', 'stale', 'consistent']).default('default'),
  addressKind: oneOf([
    'default',
    'lan',
    'wan',
    'lan_ipv4',
    'wan_ipv4',
    'lan_ipv6',
    'wan_ipv6',
  ] satisfies ConsulAddressKind[]).default('default'),
  waitMs: duration({ min: 1_000, max: MAX_WAIT_MS }).default(300_000),
  maxConnections: integer(2, 200).default(64),
  http2: boolean().default(true),
  maxStreams: integer(1, 1_000).default(200),
  rotationMs: duration({ min: 1_000, max: MAX_WAIT_MS }).default(10_000),
  requestTimeoutMs: duration({ min: 100, max: 600_000 }).default(10_000),
  backoff: backoff({ initialMs: 200, maxMs: 30_000 }),
  rateLimit: object({
    burstCount: integer(1, 1_000).default(4),
    refillMs: duration({ max: 3_600_000 }).default(2_000),
  } satisfies SchemaFor<NonNullable<ConsulRegistryOptions['rateLimit']>>).default({}),
  verifyRegistration: boolean().default(true),
  reconcileIntervalMs: duration({ min: 100, max: 3_600_000 }).default(30_000),
  random: randomSource(),
  limits: consulLimits,
} satisfies SchemaFor<ConsulRegistryOptions>

const consulOptions = object(consulSchema, {
  fix: 'Pass an object such as { url: "http://127.0.0.1:8500" }.',
  renamed: { dc: 'datacenter' },
}).default({})

type Checked = OutputOf<typeof consulOptions>

/** {@link ConsulRegistryOptions} checked, with defaults (and the `CONSUL_*` variables) applied. */
export interface ParsedConsulOptions extends Omit<Checked, 'url' | 'token' | 'tls' | 'env'> {
  /** `scheme://host:port`. */
  readonly origin: string
  /** Path prefix of the URL without a trailing slash ('' for none). */
  readonly basePath: string
  readonly https: boolean
  readonly token: string | undefined
  readonly tls: ResolvedTls | undefined
}

type Env = Readonly<Record<string, string | undefined>>

/** Checks `options` and applies defaults, including the `CONSUL_*` environment variables. */
export function parseConsulOptions(options: ConsulRegistryOptions = {}): ParsedConsulOptions {
  const o = parseOptions(consulOptions, options, { label: 'consul()' })
  const { url: _url, token: _token, tls: _tls, env, ...rest } = o
  const url = o.url ??
    urlFromEnv(env) ?? { origin: 'http://127.0.0.1:8500', basePath: '', https: false }
  return Object.freeze({
    ...rest,
    ...url,
    token: o.token ?? fromEnv(token, env, 'CONSUL_HTTP_TOKEN'),
    tls: resolveTls(o.tls, env, url.https),
  })
}

/** Runs `spec` over a non-empty environment variable, naming it `env.NAME` in errors. */
function fromEnv<T>(spec: Opt<T>, env: Env, name: string, value = env[name]): T | undefined {
  if (value === undefined || value === '') return undefined
  return parseOptions(spec, value, { label: 'consul()', path: `env.${name}` })
}

function urlFromEnv(env: Env): OutputOf<typeof agentUrl> {
  const raw = env.CONSUL_HTTP_ADDR
  // The Go client accepts a bare host:port and picks the scheme from CONSUL_HTTP_SSL (api/api.go).
  const withScheme =
    raw === undefined || raw === '' || raw.includes('://')
      ? raw
      : `${isTrue(env.CONSUL_HTTP_SSL) ? 'https' : 'http'}://${raw}`
  return fromEnv(agentUrl, env, 'CONSUL_HTTP_ADDR', withScheme)
}

/** A PEM file named by an environment variable, read at construction. */
const pemFile = string().map((path, at) => {
  try {
    return readFileSync(path)
  } catch (err) {
    return at.fail(
      path,
      `The file cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); point it at a PEM file.`,
    )
  }
})

function resolveTls(
  tls: OutputOf<typeof consulSchema.tls>,
  env: Env,
  https: boolean,
): ResolvedTls | undefined {
  if (tls !== undefined && !https)
    new OptionContext('tls', 'consul()').fail(tls, 'TLS options need an "https://" url.')
  if (!https) return undefined
  const ca = tls?.ca ?? fromEnv(pemFile, env, 'CONSUL_CACERT')
  const cert = tls?.cert ?? fromEnv(pemFile, env, 'CONSUL_CLIENT_CERT')
  const key = tls?.key ?? fromEnv(pemFile, env, 'CONSUL_CLIENT_KEY')
  if ((cert === undefined) !== (key === undefined))
    new OptionContext(cert === undefined ? 'tls.cert' : 'tls.key', 'consul()').fail(
      undefined,
      'A client certificate needs both "cert" and "key".',
    )
  const servername =
    tls?.serverName ?? (env.CONSUL_TLS_SERVER_NAME === '' ? undefined : env.CONSUL_TLS_SERVER_NAME)
  const rejectUnauthorized =
    tls?.rejectUnauthorized ??
    (env.CONSUL_HTTP_SSL_VERIFY === undefined || isTrue(env.CONSUL_HTTP_SSL_VERIFY))
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    ...(servername === undefined ? {} : { servername }),
    rejectUnauthorized,
  }
}

function isTrue(value: string | undefined): boolean {
  // Go's strconv.ParseBool spellings (the Go client reads these variables with it).
  return value !== undefined && ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)
}
