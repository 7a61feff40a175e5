/**
 * Options of the etcd registry: the public interfaces and their schema (defaults and checks,
 * in one place). Checked at construction: `InvalidOptionError` names the option, the value
 * received (credentials redacted) and the fix.
 */
import { parseOptions, type OptionContext } from '../../core/options/check.js'
import { backoff, pem, type BackoffOption } from '../../core/options/common.js'
import {
  custom,
  duration,
  integer,
  list,
  object,
  string,
  withMethods,
  type OutputOf,
  type SchemaFor,
} from '../../core/options/schema.js'
import { etcdLimits, type EtcdLimits } from '../limits.js'
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
  /** User and password, when etcd has auth enabled. Secret: never quoted in errors. */
  readonly auth?: EtcdAuth
  /** TLS material; implied TLS even with bare `host:port` hosts. Never quoted in errors. */
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
  /**
   * Retry delays of every retry loop (watch, list, lease re-grant): jittered, from `initialMs`
   * doubling up to `maxMs`. `maxMs` also caps gRPC's own reconnect backoff, so it bounds how
   * long recovery can lag behind etcd's return. @defaultValue `{ initialMs: 100, maxMs: 1_000 }`
   */
  readonly backoff?: BackoffOption
  /**
   * Keys in the first Range page when listing a service; later pages grow to about 1 MiB at the
   * size the previous page averaged, never fewer keys than this (every page is pinned to one
   * revision). @defaultValue 500
   */
  readonly pageSize?: number
  /**
   * Bounds on what etcd may hand us: bytes per value, keys per service. See
   * docs/registry-answers.md. @defaultValue `{ maxValueBytes: 256 KiB, maxInstances: 20_000 }`
   */
  readonly limits?: EtcdLimits
}

interface TlsMaterial {
  readonly rootCertificate: Buffer
  readonly certChain?: Buffer
  readonly privateKey?: Buffer
}

const HOST_RE = /^(?:(https?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/
const HOST_FIX =
  'Use "host:port", "http://host:port" or "https://host:port" (credentials go in the "auth" option).'

/** One member address, trimmed and without a trailing slash. */
const host = string({ fix: HOST_FIX })
  .required(HOST_FIX)
  .map((h, at) => {
    const m = HOST_RE.exec(h.trim())
    if (m === null || Number(m[3]) < 1 || Number(m[3]) > 65535) return at.fail(h, HOST_FIX)
    return h.trim().replace(/\/$/, '')
  })

const MEMBERS_FIX = 'Give at least one etcd member as "host:port" or "http://host:port".'
const hostList = list(host, { min: 1, fix: MEMBERS_FIX })

/** `hosts`: one member, or a non-empty list of them. */
const hosts = custom<readonly string[]>('host or list of hosts', (v, at) =>
  typeof v === 'string'
    ? Object.freeze([host.parse(v, at.child(0))])
    : (hostList.parse(v, at) ?? at.fail(v, MEMBERS_FIX)),
).required(MEMBERS_FIX)

const credentialsSchema = {
  rootCertificate: pem.required("Pass the PEM of the CA that signed etcd's certificate."),
  certChain: pem,
  privateKey: pem,
} satisfies SchemaFor<EtcdCredentials>

const authSchema = {
  username: string({ fix: 'Give the etcd user name as a non-empty string.' }).required(
    'Give the etcd user name as a non-empty string.',
  ),
  password: string({ fix: 'Give the etcd password as a non-empty string.' }).required(
    'Give the etcd password as a non-empty string.',
  ),
} satisfies SchemaFor<EtcdAuth>

/** The schema of {@link EtcdRegistryOptions}: every default and check of `etcd()`. */
export const etcdSchema = {
  hosts,
  prefix: string({ allowEmpty: true, fix: 'Use a key prefix string such as "/services/".' })
    .default('/services/')
    .map((p) => (p === '' || p.endsWith('/') ? p : `${p}/`)),
  auth: object(authSchema, { fix: 'Pass { username, password }.' }).secret(),
  credentials: object(credentialsSchema, {
    fix: 'Pass { rootCertificate, certChain?, privateKey? } as PEM.',
    refine: (c, at) => {
      if ((c.certChain === undefined) !== (c.privateKey === undefined))
        at.child(c.certChain === undefined ? 'certChain' : 'privateKey').fail(
          undefined,
          'A client certificate needs both certChain and privateKey.',
        )
    },
  })
    .secret()
    // The shape etcd3 takes: absent parts left out.
    .map(({ rootCertificate, certChain, privateKey }): TlsMaterial => ({
      rootCertificate,
      ...(certChain === undefined ? {} : { certChain }),
      ...(privateKey === undefined ? {} : { privateKey }),
    })),
  codec: withMethods<EtcdCodec>(
    ['decode'],
    'Pass an object with decode(entry) (see EtcdCodec).',
  ).default(defaultEtcdCodec),
  // etcd lease TTLs are whole seconds: at least one.
  leaseTtlMs: duration({ min: 1_000 }).default(10_000),
  requestTimeoutMs: duration().default(5_000),
  // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
  keepaliveTimeMs: duration({ min: 5_000 }).default(10_000),
  keepaliveTimeoutMs: duration().default(5_000),
  backoff: backoff({ initialMs: 100, maxMs: 1_000 }),
  pageSize: integer(1, 100_000).default(500),
  limits: etcdLimits,
} satisfies SchemaFor<EtcdRegistryOptions>

const etcdOptions = object(etcdSchema, {
  fix: 'Pass an object such as { hosts: ["127.0.0.1:2379"] }.',
  renamed: { retryInitialMs: 'backoff.initialMs', retryMaxMs: 'backoff.maxMs' },
  refine: checkSchemes,
}).default({})

/** Every member uses one scheme, and TLS credentials need https (or bare host:port). */
function checkSchemes(
  o: { readonly hosts: readonly string[]; readonly credentials: unknown },
  at: OptionContext,
): void {
  const schemes = new Set(o.hosts.map((h) => /^(https?):\/\//.exec(h)?.[1] ?? 'plain'))
  if (schemes.has('http') && schemes.has('https'))
    at.child('hosts').fail(
      o.hosts,
      'Use the same scheme for every member: all http:// or all https://.',
    )
  if (o.credentials !== undefined && schemes.has('http'))
    at.child('hosts').fail(
      o.hosts,
      'TLS credentials were given: use https:// (or bare host:port) hosts.',
    )
}

/** {@link EtcdRegistryOptions} checked, with defaults applied. Frozen. @internal */
export type ParsedEtcdOptions = OutputOf<typeof etcdOptions>

/** Checks `options` and applies defaults. Throws `InvalidOptionError`. */
export function parseEtcdOptions(options: EtcdRegistryOptions): ParsedEtcdOptions {
  return parseOptions(etcdOptions, options, { label: 'etcd()' })
}

/** Converts a lease TTL in ms to etcd's whole seconds (rounded up: never shorter than asked). */
export function leaseTtlSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000))
}
