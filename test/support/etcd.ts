/**
 * Real etcd processes for integration tests (Debian's `/usr/bin/etcd`, installed by
 * `scripts/ensure-etcd.sh`): loopback only, free ports, a temp data dir each, stopped by PID.
 * Readiness is the first successful Range, and restarts reuse the data dir and the ports; the
 * short election timeout makes a restart take ~0.2 s instead of ~1.5 s
 * (docs/design/etcd.md#running-etcd-in-tests).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noop } from 'cockatiel'
import { Etcd3, EtcdPermissionDeniedError, GRPCUnauthenticatedError, type IOptions } from 'etcd3'
import type { TestCerts } from './certs.js'

export const ETCD_BIN = process.env.WAYFIND_ETCD_BIN ?? '/usr/bin/etcd'

/** Options of {@link EtcdServer.start}. */
export interface EtcdServerOptions {
  /** Serve clients over TLS with these certificates and require client certificates. */
  readonly tls?: TestCerts
  /** `--auth-token-ttl` in seconds (simple tokens). */
  readonly authTokenTtlS?: number
  /** Raft timing; single nodes can afford the fastest. @defaultValue [10, 100] */
  readonly heartbeatMs?: number
  readonly electionMs?: number
  readonly extraArgs?: readonly string[]
}

interface Member {
  readonly name: string
  readonly clientPort: number
  readonly peerPort: number
}

/** Finds a free loopback port: bind port 0, read it, release it. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve()
    }),
  )
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const READY_TIMEOUT_MS = 20_000

// If a test process ends without remove() (a crash, a worker killed on timeout), its etcd
// children must not outlive it and hold ports and temp dirs.
const LIVE = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of LIVE) child.kill('SIGKILL')
})
const STOP_TIMEOUT_MS = 2_000

/** One etcd member process. */
export class EtcdServer {
  readonly dataDir: string
  readonly #member: Member
  readonly #cluster: readonly Member[]
  readonly #options: EtcdServerOptions
  readonly #clusterState: 'new' | 'existing'
  #child: ChildProcess | undefined
  #stderr = ''
  #spawnError: Error | undefined
  readonly #clients = new Set<Etcd3>()

  private constructor(
    member: Member,
    cluster: readonly Member[],
    options: EtcdServerOptions,
    dataDir: string,
  ) {
    this.#member = member
    this.#cluster = cluster
    this.#options = options
    this.dataDir = dataDir
    this.#clusterState = 'new'
  }

  /** Starts a single-member etcd and waits until it serves a Range. */
  static async start(options: EtcdServerOptions = {}): Promise<EtcdServer> {
    for (let attempt = 0; ; attempt++) {
      const member: Member = {
        name: 'wf0',
        clientPort: await freePort(),
        peerPort: await freePort(),
      }
      const server = new EtcdServer(
        member,
        [member],
        options,
        mkdtempSync(join(tmpdir(), 'wayfind-etcd-')),
      )
      try {
        server.#spawn()
        await server.waitReady()
        return server
      } catch (err) {
        await server.remove()
        // Another process may have taken the port between our probe and etcd's bind.
        if (attempt < 4 && server.#stderr.includes('address already in use')) continue
        throw err
      }
    }
  }

  /** @internal used by {@link startEtcdCluster}. */
  static create(
    member: Member,
    cluster: readonly Member[],
    options: EtcdServerOptions,
  ): EtcdServer {
    return new EtcdServer(member, cluster, options, mkdtempSync(join(tmpdir(), 'wayfind-etcd-')))
  }

  get name(): string {
    return this.#member.name
  }

  get clientPort(): number {
    return this.#member.clientPort
  }

  /** `host:port` (plain) or `https://host:port` in TLS mode. */
  get host(): string {
    return this.#options.tls === undefined
      ? `127.0.0.1:${this.clientPort}`
      : `https://127.0.0.1:${this.clientPort}`
  }

  get pid(): number | undefined {
    return this.#child?.pid
  }

  get running(): boolean {
    return (
      this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null
    )
  }

  /** The last lines etcd logged, for failure messages. */
  get log(): string {
    return this.#stderr
  }

  /**
   * An admin client straight to this member (no proxy), with no circuit breaker and no retries,
   * and a 2 s deadline per unary call. Closed by `remove()`.
   */
  client(extra: Partial<IOptions> = {}): Etcd3 {
    const tls = this.#options.tls
    const client = new Etcd3({
      hosts: this.host,
      faultHandling: { host: () => noop, global: noop },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 2_000 }),
      ...(tls === undefined
        ? {}
        : {
            credentials: {
              rootCertificate: Buffer.from(tls.ca),
              certChain: Buffer.from(tls.clientCert),
              privateKey: Buffer.from(tls.clientKey),
            },
          }),
      ...extra,
    })
    this.#clients.add(client)
    return client
  }

  /** Polls a Range every 20 ms until it succeeds (or is refused for lack of credentials). */
  async waitReady(timeoutMs = READY_TIMEOUT_MS): Promise<number> {
    const started = performance.now()
    const probe = this.client({ grpcOptions: { 'grpc.use_local_subchannel_pool': 1 } })
    try {
      for (;;) {
        if (this.#spawnError !== undefined) throw this.#spawnError
        if (this.#child !== undefined && !this.running)
          throw new Error(
            `etcd ${this.name} exited (${String(this.#child.exitCode ?? this.#child.signalCode)}):\n${this.#stderr}`,
          )
        try {
          await probe.kv.range(
            { key: Buffer.from('wayfind-ready-probe') },
            { deadline: Date.now() + 500 },
          )
          return performance.now() - started
        } catch (err) {
          // With auth enabled an anonymous Range is refused: the server is up all the same.
          if (err instanceof EtcdPermissionDeniedError || err instanceof GRPCUnauthenticatedError)
            return performance.now() - started
        }
        if (performance.now() - started > timeoutMs)
          throw new Error(`etcd ${this.name} not ready after ${timeoutMs} ms:\n${this.#stderr}`)
        await new Promise((r) => setTimeout(r, 20))
      }
    } finally {
      probe.close()
      this.#clients.delete(probe)
    }
  }

  /** Sends `signal` to the process and waits for it to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child
    if (child === undefined || !this.running) return
    const exited = once(child, 'exit')
    child.kill(signal)
    await exited
  }

  /** SIGTERM, then SIGKILL if it has not exited within a bound. */
  async stop(): Promise<void> {
    const child = this.#child
    if (child === undefined || !this.running) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
    }, STOP_TIMEOUT_MS)
    try {
      await exited
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Starts the process again on the same ports; resolves when ready (ms taken). Same data dir,
   * or an emptied one with `wipe` (a member restored from nothing: revisions start over).
   */
  async restart(options: { wipe?: boolean } = {}): Promise<number> {
    await this.stop()
    if (options.wipe === true) {
      rmSync(this.dataDir, { recursive: true, force: true })
      mkdirSync(this.dataDir, { recursive: true, mode: 0o700 })
    }
    this.#spawn()
    return this.waitReady()
  }

  /** @internal starts the process without waiting. */
  spawnProcess(): void {
    this.#spawn()
  }

  /** Stops the process, closes the admin clients and deletes the data dir. */
  async remove(): Promise<void> {
    for (const c of this.#clients) c.close()
    this.#clients.clear()
    await this.stop()
    rmSync(this.dataDir, { recursive: true, force: true })
  }

  #spawn(): void {
    const m = this.#member
    const tls = this.#options.tls
    const scheme = tls === undefined ? 'http' : 'https'
    const clientUrl = `${scheme}://127.0.0.1:${m.clientPort}`
    const peerUrl = `http://127.0.0.1:${m.peerPort}`
    const args = [
      '--name',
      m.name,
      '--data-dir',
      this.dataDir,
      '--listen-client-urls',
      clientUrl,
      '--advertise-client-urls',
      clientUrl,
      '--listen-peer-urls',
      peerUrl,
      '--initial-advertise-peer-urls',
      peerUrl,
      '--initial-cluster',
      this.#cluster.map((c) => `${c.name}=http://127.0.0.1:${c.peerPort}`).join(','),
      '--initial-cluster-state',
      this.#clusterState,
      '--initial-cluster-token',
      `wayfind-${String(this.#cluster[0]?.peerPort)}`,
      `--heartbeat-interval=${String(this.#options.heartbeatMs ?? 10)}`,
      `--election-timeout=${String(this.#options.electionMs ?? 100)}`,
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
      '--log-level',
      'warn',
      ...(tls === undefined
        ? []
        : [
            '--cert-file',
            tls.serverCertFile,
            '--key-file',
            tls.serverKeyFile,
            '--trusted-ca-file',
            tls.caFile,
            '--client-cert-auth',
          ]),
      ...(this.#options.authTokenTtlS === undefined
        ? []
        : [`--auth-token-ttl=${String(this.#options.authTokenTtlS)}`]),
      ...(this.#options.extraArgs ?? []),
    ]
    this.#stderr = ''
    this.#spawnError = undefined
    const child = spawn(ETCD_BIN, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH ?? '' },
    })
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => {
      this.#stderr = (this.#stderr + chunk).slice(-8_000)
    })
    // A missing binary is an 'error' event, not an exit: keep it for waitReady() to throw.
    child.on('error', (err) => {
      this.#spawnError = new Error(
        `cannot run ${ETCD_BIN} (install it with scripts/ensure-etcd.sh): ${err.message}`,
      )
    })
    LIVE.add(child)
    child.once('exit', () => {
      LIVE.delete(child)
    })
    this.#child = child
  }
}

/** A multi-member cluster on loopback. */
export interface EtcdCluster {
  readonly members: readonly EtcdServer[]
  /** Every member's `host:port`, for client `hosts`. */
  readonly hosts: readonly string[]
  /** The member that currently leads (asks each running member). */
  leader(): Promise<EtcdServer>
  remove(): Promise<void>
}

/** Starts an `size`-member cluster (raft heartbeat 20 ms, election 200 ms). */
export async function startEtcdCluster(
  size = 3,
  options: EtcdServerOptions = {},
): Promise<EtcdCluster> {
  const ms: Member[] = []
  for (let i = 0; i < size; i++)
    ms.push({ name: `wf${String(i)}`, clientPort: await freePort(), peerPort: await freePort() })
  const opts = { heartbeatMs: 20, electionMs: 200, ...options }
  const members = ms.map((m) => EtcdServer.create(m, ms, opts))
  const removeAll = async (): Promise<void> => {
    await Promise.all(members.map((s) => s.remove()))
  }
  try {
    for (const s of members) s.spawnProcess()
    await Promise.all(members.map((s) => s.waitReady()))
  } catch (err) {
    await removeAll()
    throw err
  }
  return {
    members,
    hosts: members.map((s) => s.host),
    async leader() {
      for (const s of members) {
        if (!s.running) continue
        const c = s.client()
        try {
          const status = await c.maintenance.status({ deadline: Date.now() + 2_000 })
          if (status.leader === status.header.member_id) return s
        } catch {
          // Not answering: not the leader we can reach.
        } finally {
          c.close()
        }
      }
      throw new Error('no running member reports itself as leader')
    },
    remove: removeAll,
  }
}

/** Creates the root user and role with `password` and turns auth on (etcd 3.4 needs role root). */
export async function enableAuth(server: EtcdServer, password: string): Promise<void> {
  const admin = server.client()
  try {
    await admin.role('root').create()
    await admin.user('root').create(password)
    await admin.user('root').addRole('root')
    await admin.auth.authEnable({})
  } finally {
    admin.close()
  }
}
