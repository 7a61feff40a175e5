/**
 * Options of the etcd registry, their defaults, and their validation (at construction, with
 * `InvalidOptionError`: option, value received, fix).
 */
import { InvalidOptionError } from '../../errors.js'
import { resolveEtcdLimits, type EtcdLimits, type ResolvedEtcdLimits } from '../limits.js'
import { defaultEtcdCodec, type EtcdCodec } from './mapping.js'

/** TLS material for etcd (`--trusted-ca-file`, and a client certificate for `--client-cert-auth`). */
export interface EtcdCredentials {
  /** PEM of the CA that signed etcd's server certificate. */
  readonly rootCertificate: Buffer | string
  /** PEM client certificate (mutual TLS). Requires `privateKey`. */
  readonly certChain?: Buffer | string
  /** PEM private key of `certChain`. */
  readonly privateKey?: Buffer | string
}

/** etcd user credentials (etcd auth, simple or JWT tokens). The password never appears in errors. */
export interface EtcdAuth {
  readonly username: string
  readonly password: string
}

/** Options of {@link etcd}. */
export interface EtcdRegistryOptions {
  /**
   * Cluster members: `host:port`, `http://host:port` or `https://host:port` (all members
   * with the same scheme). Members are tried in random order; a failed stream moves to another.
   */
  readonly hosts: string | readonly string[]
  /**
   * Root of the service keys: instances of `svc` live under `<prefix>svc/`. A trailing `/` is
   * added when missing; `''` reads keys such as `user.rpc/<id>` (go-zero).
   * @defaultValue '/services/'
   */
  readonly prefix?: string
  /** User and password, when etcd has auth enabled. */
  readonly auth?: EtcdAuth
  /** TLS material; implied TLS even with bare `host:port` hosts. */
  readonly credentials?: EtcdCredentials
  /** Value decoder. @defaultValue the layout-detecting codec (see `mapping.ts`) */
  readonly codec?: EtcdCodec
  /**
   * Lease TTL of registrations without `check.ttlMs`. etcd TTLs are whole seconds: rounded up.
   * @defaultValue 10_000
   */
  readonly leaseTtlMs?: number
  /** Deadline of every unary request (Range, Put, LeaseGrant...), connecting included. @defaultValue 5_000 */
  readonly requestTimeoutMs?: number
  /**
   * gRPC keepalive ping period on the connections; with `keepaliveTimeoutMs` it bounds how long
   * a half-open connection goes unnoticed. etcd refuses pings more often than every 5 s
   * (`--grpc-keepalive-min-time`). @defaultValue 10_000
   */
  readonly keepaliveTimeMs?: number
  /** How long a keepalive ping may stay unanswered. @defaultValue 5_000 */
  readonly keepaliveTimeoutMs?: number
  /** First retry delay after a failure (jittered, doubling). @defaultValue 100 */
  readonly retryInitialMs?: number
  /** Largest retry delay; also bounds how long recovery can lag behind etcd's return. @defaultValue 1_000 */
  readonly retryMaxMs?: number
  /** Keys per Range page when listing a service (every page is pinned to one revision). @defaultValue 500 */
  readonly pageSize?: number
  /**
   * Bounds on what etcd may hand us: bytes per value, keys per service. See
   * docs/registry-answers.md. @defaultValue `{ maxValueBytes: 256 KiB, maxInstances: 20_000 }`
   */
  readonly limits?: EtcdLimits
}

/** Options with defaults applied. @internal */
export interface NormalizedEtcdOptions {
  readonly hosts: readonly string[]
  readonly prefix: string
  readonly auth: EtcdAuth | undefined
  readonly credentials:
    { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer } | undefined
  readonly codec: EtcdCodec
  readonly leaseTtlMs: number
  readonly requestTimeoutMs: number
  readonly keepaliveTimeMs: number
  readonly keepaliveTimeoutMs: number
  readonly retryInitialMs: number
  readonly retryMaxMs: number
  readonly pageSize: number
  readonly limits: ResolvedEtcdLimits
}

export const ETCD_DEFAULTS = Object.freeze({
  prefix: '/services/',
  leaseTtlMs: 10_000,
  requestTimeoutMs: 5_000,
  keepaliveTimeMs: 10_000,
  keepaliveTimeoutMs: 5_000,
  retryInitialMs: 100,
  retryMaxMs: 1_000,
  pageSize: 500,
})

const HOST_RE = /^(?:(https?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/

/** Validates `options` and applies defaults. Throws `InvalidOptionError`. */
export function normalizeEtcdOptions(options: EtcdRegistryOptions): NormalizedEtcdOptions {
  // Runtime checks: JavaScript callers get the same clear errors as TypeScript ones.
  if (!isRecord(options))
    throw new InvalidOptionError(
      'etcd options',
      options,
      'Pass an object such as { hosts: ["127.0.0.1:2379"] }.',
    )
  const hostList: readonly unknown[] =
    typeof options.hosts === 'string'
      ? [options.hosts]
      : Array.isArray(options.hosts)
        ? options.hosts
        : []
  if (hostList.length === 0)
    throw new InvalidOptionError(
      'hosts',
      options.hosts,
      'Give at least one etcd member as "host:port" or "http://host:port".',
    )
  const schemes = new Set<string>()
  const hosts: string[] = []
  for (const [i, h] of hostList.entries()) {
    const m = typeof h === 'string' ? HOST_RE.exec(h.trim()) : null
    if (m === null || Number(m[3]) < 1 || Number(m[3]) > 65535)
      throw new InvalidOptionError(
        `hosts[${String(i)}]`,
        h,
        'Use "host:port", "http://host:port" or "https://host:port".',
      )
    schemes.add(m[1] ?? 'plain')
    hosts.push((h as string).trim().replace(/\/$/, ''))
  }
  if (schemes.has('http') && schemes.has('https'))
    throw new InvalidOptionError(
      'hosts',
      options.hosts,
      'Use the same scheme for every member: all http:// or all https://.',
    )
  if (options.credentials !== undefined && schemes.has('http'))
    throw new InvalidOptionError(
      'hosts',
      options.hosts,
      'TLS credentials were given: use https:// (or bare host:port) hosts.',
    )

  let prefix = options.prefix ?? ETCD_DEFAULTS.prefix
  if (typeof prefix !== 'string' || /[\0]/.test(prefix))
    throw new InvalidOptionError(
      'prefix',
      options.prefix,
      'Use a key prefix string such as "/services/".',
    )
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/'

  const auth = options.auth
  if (auth !== undefined) {
    if (!isRecord(auth) || typeof auth.username !== 'string' || auth.username === '')
      throw new InvalidOptionError(
        'auth.username',
        isRecord(auth) ? auth.username : auth,
        'Give the etcd user name as a non-empty string.',
      )
    // Never echo the password back: describe its type only.
    if (typeof auth.password !== 'string' || auth.password === '')
      throw new InvalidOptionError(
        'auth.password',
        typeof auth.password === 'string' ? '(empty string)' : typeof auth.password,
        'Give the etcd password as a non-empty string.',
      )
  }

  const credentials = normalizeCredentials(options.credentials)

  const codec = options.codec ?? defaultEtcdCodec
  if (!isRecord(codec) || typeof codec.decode !== 'function')
    throw new InvalidOptionError(
      'codec',
      codec,
      'Pass an object with decode(entry) (see EtcdCodec).',
    )

  const leaseTtlMs = duration(
    options,
    'leaseTtlMs',
    1_000,
    'etcd lease TTLs are whole seconds, at least 1 s.',
  )
  const retryInitialMs = duration(options, 'retryInitialMs', 1, 'Use a delay of at least 1 ms.')
  const retryMaxMs = duration(options, 'retryMaxMs', 1, 'Use a delay of at least 1 ms.')
  if (retryMaxMs < retryInitialMs)
    throw new InvalidOptionError(
      'retryMaxMs',
      retryMaxMs,
      `Use a value of at least retryInitialMs (${String(retryInitialMs)}).`,
    )
  const keepaliveTimeMs = duration(
    options,
    'keepaliveTimeMs',
    5_000,
    'etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).',
  )
  const pageSize = options.pageSize ?? ETCD_DEFAULTS.pageSize
  if (!Number.isInteger(pageSize) || pageSize < 1)
    throw new InvalidOptionError(
      'pageSize',
      pageSize,
      'Use a positive integer number of keys per page.',
    )
  return {
    hosts,
    prefix,
    auth: auth === undefined ? undefined : { username: auth.username, password: auth.password },
    credentials,
    codec,
    leaseTtlMs,
    requestTimeoutMs: duration(options, 'requestTimeoutMs', 1, 'Use a timeout of at least 1 ms.'),
    keepaliveTimeMs,
    keepaliveTimeoutMs: duration(
      options,
      'keepaliveTimeoutMs',
      1,
      'Use a timeout of at least 1 ms.',
    ),
    retryInitialMs,
    retryMaxMs,
    pageSize,
    limits: resolveEtcdLimits(options.limits),
  }
}

type DurationKey =
  | 'leaseTtlMs'
  | 'requestTimeoutMs'
  | 'keepaliveTimeMs'
  | 'keepaliveTimeoutMs'
  | 'retryInitialMs'
  | 'retryMaxMs'

function duration(
  options: EtcdRegistryOptions,
  key: DurationKey,
  min: number,
  fix: string,
): number {
  const v = options[key] ?? ETCD_DEFAULTS[key]
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min)
    throw new InvalidOptionError(key, v, fix)
  return v
}

/** Converts a lease TTL in ms to etcd's whole seconds (rounded up: never shorter than asked). */
export function leaseTtlSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000))
}

function normalizeCredentials(
  c: EtcdCredentials | undefined,
): NormalizedEtcdOptions['credentials'] {
  if (c === undefined) return undefined
  const pem = (v: unknown, option: string, required: boolean): Buffer | undefined => {
    if (v === undefined && !required) return undefined
    if (typeof v === 'string' && v.includes('-----BEGIN')) return Buffer.from(v)
    if (Buffer.isBuffer(v) && v.includes('-----BEGIN')) return v
    throw new InvalidOptionError(
      option,
      typeof v === 'string' ? '(a string that is not PEM)' : v,
      'Pass the PEM text (string or Buffer), not a file path.',
    )
  }
  if (!isRecord(c))
    throw new InvalidOptionError(
      'credentials',
      c,
      'Pass { rootCertificate, certChain?, privateKey? } as PEM.',
    )
  const rootCertificate = pem(c.rootCertificate, 'credentials.rootCertificate', true) as Buffer
  const certChain = pem(c.certChain, 'credentials.certChain', false)
  const privateKey = pem(c.privateKey, 'credentials.privateKey', false)
  if ((certChain === undefined) !== (privateKey === undefined))
    throw new InvalidOptionError(
      certChain === undefined ? 'credentials.certChain' : 'credentials.privateKey',
      undefined,
      'A client certificate needs both certChain and privateKey.',
    )
  return {
    rootCertificate,
    ...(certChain === undefined ? {} : { certChain }),
    ...(privateKey === undefined ? {} : { privateKey }),
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null
}
