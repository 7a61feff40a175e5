/**
 * Registry selection shared by every command: flags first, then the environment variables the
 * registries' own tools read (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, `ETCDCTL_ENDPOINTS`,
 * `ETCDCTL_USER`, `ETCDCTL_CACERT`/`ETCDCTL_CERT`/`ETCDCTL_KEY`).
 */
import { readFileSync } from 'node:fs'
import { isWayfindError } from '../errors.js'
import { consul } from '../registry/consul/provider.js'
import { etcd } from '../registry/etcd/provider.js'
import type { EtcdRegistryOptions } from '../registry/etcd/options.js'
import type { RegistryProvider } from '../registry/provider.js'
import { UsageError } from './usage.js'

/** `parseArgs` option definitions every command accepts. */
export const REGISTRY_OPTIONS = {
  consul: { type: 'string' },
  token: { type: 'string' },
  datacenter: { type: 'string' },
  // The old spelling, kept as an alias of --datacenter.
  dc: { type: 'string' },
  etcd: { type: 'string' },
  prefix: { type: 'string' },
  user: { type: 'string' },
} as const

export const REGISTRY_HELP = `Registry (one of):
  --consul URL        Consul agent, e.g. http://127.0.0.1:8500   (env CONSUL_HTTP_ADDR)
    --token TOKEN     ACL token, sent as X-Consul-Token          (env CONSUL_HTTP_TOKEN)
    --datacenter NAME datacenter to query (alias --dc)
  --etcd HOSTS        etcd members, comma-separated, e.g. http://127.0.0.1:2379
                                                                 (env ETCDCTL_ENDPOINTS)
    --prefix PREFIX   key prefix of services (default /services/)
    --user USER:PASS  etcd user                                  (env ETCDCTL_USER)
                      TLS: env ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY
When no flag is given, the environment decides; when both registries are configured there,
pass --consul or --etcd.`

export interface RegistryFlags {
  readonly consul?: string | undefined
  readonly token?: string | undefined
  readonly datacenter?: string | undefined
  /** Alias of {@link RegistryFlags.datacenter}. */
  readonly dc?: string | undefined
  readonly etcd?: string | undefined
  readonly prefix?: string | undefined
  readonly user?: string | undefined
}

/** A registry factory (each client needs its own provider) plus a description for output. */
export interface RegistryChoice {
  readonly kind: 'consul' | 'etcd'
  /** Where, for humans (never includes credentials). */
  readonly where: string
  create(settings?: CreateSettings): RegistryProvider
}

/** How a command wants its client's provider. */
export interface CreateSettings {
  /** No churn-guard pacing of watches (for measuring the registry itself). */
  readonly unpaced?: boolean
}

type Env = Readonly<Record<string, string | undefined>>

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim()
}

/** Picks the registry; throws `UsageError` when none or both are configured, or options are invalid. */
export function chooseRegistry(flags: RegistryFlags, env: Env = process.env): RegistryChoice {
  const consulFlag = flags.consul
  const etcdFlag = flags.etcd
  if (consulFlag !== undefined && etcdFlag !== undefined)
    throw new UsageError('pass either --consul or --etcd, not both')
  let kind: 'consul' | 'etcd'
  if (consulFlag !== undefined) kind = 'consul'
  else if (etcdFlag !== undefined) kind = 'etcd'
  else {
    const fromConsul = nonEmpty(env.CONSUL_HTTP_ADDR) !== undefined
    const fromEtcd = nonEmpty(env.ETCDCTL_ENDPOINTS) !== undefined
    if (fromConsul && fromEtcd)
      throw new UsageError(
        'both CONSUL_HTTP_ADDR and ETCDCTL_ENDPOINTS are set: pass --consul or --etcd to choose',
      )
    if (!fromConsul && !fromEtcd)
      throw new UsageError(
        'no registry: pass --consul URL or --etcd HOSTS (or set CONSUL_HTTP_ADDR / ETCDCTL_ENDPOINTS)',
      )
    kind = fromConsul ? 'consul' : 'etcd'
  }
  if (kind === 'consul') {
    for (const f of ['prefix', 'user'] as const)
      if (flags[f] !== undefined) throw new UsageError(`--${f} applies to etcd, not Consul`)
    return consulChoice(flags, env)
  }
  for (const f of ['token', 'datacenter', 'dc'] as const)
    if (flags[f] !== undefined) throw new UsageError(`--${f} applies to Consul, not etcd`)
  return etcdChoice(flags, env)
}

function consulChoice(flags: RegistryFlags, env: Env): RegistryChoice {
  const url = nonEmpty(flags.consul) ?? nonEmpty(env.CONSUL_HTTP_ADDR)
  if (flags.datacenter !== undefined && flags.dc !== undefined && flags.datacenter !== flags.dc)
    throw new UsageError('--dc is an alias of --datacenter: pass one of them')
  const datacenter = flags.datacenter ?? flags.dc
  // consul() reads the remaining CONSUL_* variables (token, TLS) itself; normalise a bare
  // host:port the way the consul CLI does.
  const options = {
    env,
    ...(url === undefined ? {} : { url: /^[a-z]+:\/\//i.test(url) ? url : `http://${url}` }),
    ...(flags.token === undefined ? {} : { token: flags.token }),
    ...(datacenter === undefined ? {} : { datacenter }),
  }
  // `unpaced`: a measuring client must see the registry, not the churn guard (the per-watch
  // token bucket that paces early answers), so it gets a bucket that never runs dry.
  const create = (settings: CreateSettings = {}): RegistryProvider =>
    consul(
      settings.unpaced === true
        ? { ...options, rateLimit: { burstCount: 1_000, refillMs: 1 } }
        : options,
    )
  validate(create)
  return { kind: 'consul', where: `consul ${options.url ?? 'http://127.0.0.1:8500'}`, create }
}

function etcdChoice(flags: RegistryFlags, env: Env): RegistryChoice {
  const hostsText = nonEmpty(flags.etcd) ?? nonEmpty(env.ETCDCTL_ENDPOINTS) ?? ''
  const hosts = hostsText
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '')
  if (hosts.length === 0)
    throw new UsageError('--etcd needs at least one host, e.g. http://127.0.0.1:2379')
  const user = nonEmpty(flags.user) ?? nonEmpty(env.ETCDCTL_USER)
  let auth: EtcdRegistryOptions['auth']
  if (user !== undefined) {
    const colon = user.indexOf(':')
    if (colon <= 0) throw new UsageError('--user must be USER:PASSWORD (as ETCDCTL_USER)')
    auth = { username: user.slice(0, colon), password: user.slice(colon + 1) }
  }
  const ca = nonEmpty(env.ETCDCTL_CACERT)
  const cert = nonEmpty(env.ETCDCTL_CERT)
  const key = nonEmpty(env.ETCDCTL_KEY)
  let credentials: EtcdRegistryOptions['credentials']
  if (ca !== undefined) {
    credentials = {
      rootCertificate: readPem(ca, 'ETCDCTL_CACERT'),
      ...(cert === undefined ? {} : { certChain: readPem(cert, 'ETCDCTL_CERT') }),
      ...(key === undefined ? {} : { privateKey: readPem(key, 'ETCDCTL_KEY') }),
    }
  }
  const options: EtcdRegistryOptions = {
    hosts,
    ...(flags.prefix === undefined ? {} : { prefix: flags.prefix }),
    ...(auth === undefined ? {} : { auth }),
    ...(credentials === undefined ? {} : { credentials }),
  }
  const create = (): RegistryProvider => etcd(options)
  validate(create)
  return { kind: 'etcd', where: `etcd ${hosts.join(',')}`, create }
}

function readPem(path: string, variable: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new UsageError(
      `${variable}: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`,
    )
  }
}

/** Builds (and closes) one provider so that invalid options are a usage error before any I/O. */
function validate(create: () => RegistryProvider): void {
  try {
    void create()
      .close()
      .catch(() => undefined)
  } catch (err) {
    if (isWayfindError(err)) throw new UsageError(err.message)
    throw err
  }
}
