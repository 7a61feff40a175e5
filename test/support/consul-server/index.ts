/**
 * The Consul test server: a real HTTP(S)/HTTP2 server that speaks the parts of Consul's HTTP API
 * wayfind uses, with Consul's semantics (docs/design/consul.md#the-consul-test-server). It is a
 * test *peer*: it behaves like an agent on a one-server cluster, and its own tests pin each rule.
 * See README.md.
 *
 * @example
 *   const consul = await startConsulServer()
 *   consul.addNode('node-2', { address: '10.0.0.2' })
 *   consul.registerService({ node: 'node-2', name: 'payments', id: 'p1', port: 8080 })
 *   // ... GET `${consul.url}/v1/health/service/payments`
 *   await consul.close()
 */
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { systemClock, type Clock, type TimerHandle } from '../../../src/core/clock.js'
import { Agent } from './agent.js'
import { Catalog, type CheckStatus } from './catalog.js'
import {
  ConsulApi,
  type AclConfig,
  type ApiRequest,
  type ApiResponse,
  type FaultState,
} from './http-api.js'

export type { CheckStatus } from './catalog.js'

export interface ConsulTestServerOptions {
  /** Interface to bind. @defaultValue '127.0.0.1' */
  host?: string
  /** Port to bind. @defaultValue 0 (a free port) */
  port?: number
  /** Name of the agent's own node. @defaultValue 'node-1' */
  nodeName?: string
  /** Address of the agent's own node. @defaultValue '127.0.0.1' */
  nodeAddress?: string
  /** @defaultValue 'dc1' */
  datacenter?: string
  /** PEM strings: serve HTTPS. `requestCert` requires a client certificate signed by `ca`. */
  tls?: { key: string; cert: string; ca?: string; requestCert?: boolean }
  /** With `tls`: serve HTTP/2 (ALPN h2) with HTTP/1.1 fallback. */
  http2?: boolean
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS of the HTTP/2 server. Consul calls `http2.ConfigureServer(server,
   * nil)` (agent.go `setupHTTPS`), so Go's default applies: 250 streams per connection; more
   * blocking queries on one connection queue in the client. @defaultValue 250
   */
  http2MaxConcurrentStreams?: number
  /** ACLs with default-deny policy. `tokens[t].read` defaults to true. */
  acl?: AclConfig
  /**
   * Consul's `limits.https_handshake_timeout`: an HTTPS connection must finish the TLS handshake
   * and send its first request within this time, or it is closed (agent.go `setupHTTPS`: a read
   * deadline from StateNew, cleared at StateActive). Later idle time is not limited. 0 disables.
   * @defaultValue 5_000
   */
  httpsHandshakeTimeoutMs?: number
  /** Consul's `limits.http_max_conns_per_client`; 0 disables. @defaultValue 200 */
  maxConnsPerClient?: number
  /** Consul's `max_query_time`: `?wait` above it is clamped without error. @defaultValue 600_000 */
  maxWaitMs?: number
  /** Consul's `default_query_time`, used when `?wait` is absent. @defaultValue 300_000 */
  defaultWaitMs?: number
  /** Shortest HTTP/TCP check interval (Consul's `checks.MinInterval`). @defaultValue 1_000 */
  minCheckIntervalMs?: number
  /** Reaper period (Consul's `check_reap_interval`). @defaultValue 30_000 */
  checkReapIntervalMs?: number
  /** Floor of `DeregisterCriticalServiceAfter` (Consul's `check_deregister_interval_min`). @defaultValue 60_000 */
  checkDeregisterIntervalMinMs?: number
  /**
   * Consul's `check_update_interval`: an output-only change reaches the catalog (and wakes
   * watchers) only after interval/2 + random(interval). 0 writes it at once. @defaultValue 300_000
   */
  checkUpdateIntervalMs?: number
  /** Time source for blocking-query timeouts, TTLs, check intervals and the reaper. */
  clock?: Clock
  /** Random source in [0, 1) for the wait/16 jitter and the first-probe stagger. @defaultValue Math.random */
  random?: () => number
}

/** One request as the server saw it. */
export interface RequestRecord {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly httpVersion: string
  readonly remotePort: number | undefined
}

export interface ServiceRegistration {
  /** Node the instance runs on; it must exist (`addNode`). @defaultValue the agent's node */
  node?: string
  name: string
  /** @defaultValue name */
  id?: string
  /**
   * Empty means "use the node address" (docs/design/consul.md#service-address).
   * @defaultValue ''
   */
  address?: string
  port?: number
  tags?: string[]
  meta?: Record<string, string>
  weights?: { passing: number; warning: number }
  taggedAddresses?: Record<string, { address: string; port: number }>
  /** Service checks to create with it (ID defaults to `service:<id>`). */
  checks?: { id?: string; name?: string; status: CheckStatus; output?: string; type?: string }[]
}

export interface ConsulFaults extends FaultState {
  /** The next `count` API requests get `status` with `body` (default 500 "No cluster leader"... see README). */
  failNext(count: number, status?: number, body?: string): void
  /** The next `count` API requests get 429 "Rate limit reached, try again later". */
  rateLimitNext(count: number): void
  /** The next `count` requests have their connection destroyed without an answer. */
  dropNextRequests(count: number): void
  /** Destroys every open client connection now (blocking queries in flight included). */
  dropConnections(): void
  /** Simulates a snapshot restore: every index above `to` drops to `to`; blocked queries return at once. */
  regressIndex(to: number): void
  /** While true, requests are accepted and never answered (until cleared, dropped or closed). */
  stall: boolean
}

export interface ConsulStats {
  /** TCP connections open now (accepted, not over the cap). */
  openConnections(): number
  /** Highest `openConnections()` seen. */
  peakConnections(): number
  /** Connections refused with 429 by the per-client cap. */
  rejectedConnections(): number
  /** Blocking queries parked now. */
  blockingQueries(): number
  /** Every request received, oldest first. */
  readonly requests: readonly RequestRecord[]
}

export interface ConsulTestServer {
  readonly url: string
  readonly port: number
  /** The current Raft index. */
  readonly index: number
  readonly faults: ConsulFaults
  readonly stats: ConsulStats
  /**
   * 'request' (RequestRecord), 'blocking' ({path, minIndex, timeoutMs}),
   * 'unblocked' ({path, minIndex, index, reason}), 'connectionRejected' ({remoteAddress}).
   */
  readonly events: EventEmitter
  /** Closes listeners and destroys open connections (blocking queries included). Idempotent. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>

  /** Registers (or updates) a catalog node with a passing `serfHealth` check. */
  addNode(
    name: string,
    options?: { address?: string; meta?: Record<string, string>; id?: string },
  ): void
  /** Removes a node with its services and checks. */
  removeNode(name: string): void
  /** Sets the node's `serfHealth` check (a failed member makes every service on it critical). */
  setNodeHealth(name: string, status: CheckStatus, output?: string): void
  /** Catalog registration (like `PUT /v1/catalog/register`); not tied to the agent. */
  registerService(reg: ServiceRegistration): void
  /** Removes a service instance from the catalog (agent-registered ones too). Returns false if unknown. */
  removeService(node: string, id: string): boolean
  /** Creates or updates a check (node-level when `serviceId` is omitted). */
  setCheck(
    node: string,
    checkId: string,
    status: CheckStatus,
    options?: { serviceId?: string; output?: string; name?: string },
  ): void
  /**
   * Restarts the agent. By default it forgets every service and check registered through it (a
   * `-dev` agent, or one without its data dir) and the catalog drops them. With `persist` it
   * reloads them from its data dir (status kept, TTL clocks restarted). With `dropConnections`
   * every open client connection is cut, as when the real process exits.
   */
  restartAgent(options?: { persist?: boolean; dropConnections?: boolean }): void
  /** Runs one reaper pass now (DeregisterCriticalServiceAfter) instead of waiting for the next tick. */
  reapNow(): void
  /** Resolves once at least `count` blocking queries are parked; with `count` 0, once none is. */
  waitForBlockingQueries(count?: number, timeoutMs?: number): Promise<void>
}

const TOO_MANY_CONNS_MSG =
  'Your IP is issuing too many concurrent connections, please rate limit your calls\n'
// go-connlimit tooManyRequestsResponse, byte for byte.
const TOO_MANY_CONNS_RESPONSE =
  'HTTP/1.1 429 Too Many Requests\r\n' +
  'Content-Type: text/plain\r\n' +
  `Content-Length: ${Buffer.byteLength(TOO_MANY_CONNS_MSG)}\r\n` +
  'Connection: close\r\n\r\n' +
  TOO_MANY_CONNS_MSG

type Handler = (req: ApiRequest & { socket?: net.Socket | null }, res: ApiResponse) => void

export async function startConsulServer(
  options: ConsulTestServerOptions = {},
): Promise<ConsulTestServer> {
  const host = options.host ?? '127.0.0.1'
  const nodeName = options.nodeName ?? 'node-1'
  const nodeAddress = options.nodeAddress ?? '127.0.0.1'
  const datacenter = options.datacenter ?? 'dc1'
  const clock = options.clock ?? systemClock
  const random = options.random ?? Math.random
  const maxConns = options.maxConnsPerClient ?? 200
  if (options.http2 === true && options.tls === undefined)
    throw new Error(
      'startConsulServer: http2 requires tls (h2 is only offered over TLS, like Consul)',
    )

  const catalog = new Catalog()
  const agent = new Agent(catalog, {
    nodeName,
    clock,
    random,
    minCheckIntervalMs: options.minCheckIntervalMs ?? 1_000,
    checkReapIntervalMs: options.checkReapIntervalMs ?? 30_000,
    checkDeregisterIntervalMinMs: options.checkDeregisterIntervalMinMs ?? 60_000,
    checkUpdateIntervalMs: options.checkUpdateIntervalMs ?? 300_000,
  })
  const events = new EventEmitter()
  const requests: RequestRecord[] = []
  const sockets = new Set<net.Socket>()
  const perIp = new Map<string, number>()
  let peak = 0
  let rejected = 0
  const failQueue: { status: number; body: string }[] = []
  let dropCount = 0
  const stalled = new Set<ApiResponse>()
  /** HTTPS connections still inside their handshake deadline, by remote port (one IP: loopback). */
  const handshakeDeadlines = new Map<string, TimerHandle>()
  const handshakeTimeoutMs =
    options.tls === undefined ? 0 : (options.httpsHandshakeTimeoutMs ?? 5_000)
  let closed = false

  const faultState: FaultState & { stall: boolean } = {
    legacyStatusCodes: false,
    leaderless: false,
    streamingBackend: false,
    zeroIndex: false,
    neverBlock: false,
    stall: false,
  }

  const api = new ConsulApi(
    catalog,
    agent,
    {
      datacenter,
      nodeName,
      acl: options.acl,
      maxWaitMs: options.maxWaitMs ?? 600_000,
      defaultWaitMs: options.defaultWaitMs ?? 300_000,
      clock,
      random,
    },
    faultState,
    {
      blockingStarted: (info) => {
        events.emit('blocking', info)
      },
      blockingEnded: (info) => {
        events.emit('unblocked', info)
      },
    },
  )

  const ensureNode = (
    name: string,
    address: string,
    meta: Record<string, string>,
    id: string,
  ): void => {
    catalog.ensureNode({
      ID: id,
      Node: name,
      Address: address,
      Datacenter: datacenter,
      TaggedAddresses: { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address },
      Meta: meta,
    })
  }
  const setCheck = (
    node: string,
    checkId: string,
    status: CheckStatus,
    o: { serviceId?: string; output?: string; name?: string } = {},
  ): void => {
    if (catalog.node(node) === undefined) throw new Error(`setCheck: unknown node ${node}`)
    const serviceId = o.serviceId ?? ''
    const svc = serviceId === '' ? undefined : catalog.service(node, serviceId)
    if (serviceId !== '' && svc === undefined)
      throw new Error(`setCheck: unknown service ${serviceId} on ${node}`)
    const prev = catalog.check(node, checkId)
    catalog.ensureCheck({
      Node: node,
      CheckID: checkId,
      Name:
        o.name ??
        prev?.Name ??
        (checkId === 'serfHealth' ? 'Serf Health Status' : `Service '${svc?.Service ?? ''}' check`),
      Status: status,
      Notes: prev?.Notes ?? '',
      // Serf's own outputs for the member check (agent/consul/leader.go).
      Output:
        o.output ??
        (checkId === 'serfHealth'
          ? status === 'passing'
            ? 'Agent alive and reachable'
            : 'Agent not live or unreachable'
          : (prev?.Output ?? '')),
      ServiceID: serviceId,
      ServiceName: svc?.Service ?? '',
      ServiceTags: svc === undefined ? [] : [...svc.Tags],
      Type: prev?.Type ?? (checkId === 'serfHealth' ? '' : 'ttl'),
      Interval: prev?.Interval ?? '',
      Timeout: prev?.Timeout ?? '',
      ExposedPort: 0,
    })
  }
  const addNode = (
    name: string,
    o: { address?: string; meta?: Record<string, string>; id?: string } = {},
  ): void => {
    const existing = catalog.node(name)
    catalog.transaction(() => {
      ensureNode(
        name,
        o.address ?? existing?.Address ?? '127.0.0.1',
        o.meta ?? existing?.Meta ?? { 'consul-network-segment': '' },
        o.id ?? existing?.ID ?? randomUUID(),
      )
      if (catalog.check(name, 'serfHealth') === undefined) setCheck(name, 'serfHealth', 'passing')
    })
  }
  addNode(nodeName, { address: nodeAddress })

  const handler: Handler = (req, res) => {
    const url = new URL(req.url ?? '/', 'http://consul')
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: { ...req.headers },
      httpVersion: req.httpVersion,
      remotePort: req.socket?.remotePort,
    }
    requests.push(record)
    events.emit('request', record)
    // The first request makes the connection active: its handshake deadline no longer applies.
    const deadlineKey = `${req.socket?.remoteAddress ?? ''}|${req.socket?.remotePort ?? ''}`
    handshakeDeadlines.get(deadlineKey)?.clear()
    handshakeDeadlines.delete(deadlineKey)
    if (closed) return
    if (dropCount > 0) {
      dropCount--
      destroyRequestConnection(req)
      return
    }
    if (faultState.stall) {
      stalled.add(res)
      res.on('close', () => stalled.delete(res))
      return
    }
    const fail = url.pathname.startsWith('/v1/') ? failQueue.shift() : undefined
    if (fail !== undefined) {
      res.statusCode = fail.status
      res.setHeader('Content-Type', 'text/plain; charset=utf-8')
      res.end(fail.body)
      return
    }
    void api.handle(req, res)
  }

  // The inner server never listens: our own net.Server accepts, applies the per-IP cap, then hands
  // the socket over by emitting 'connection' (documented for node:http; tls.Server handles it too).
  let inner: net.Server
  let secureContext: tls.SecureContext | undefined
  if (options.tls !== undefined) {
    const t = options.tls
    const tlsOpts = {
      key: t.key,
      cert: t.cert,
      ...(t.ca !== undefined ? { ca: t.ca } : {}),
      requestCert: t.requestCert === true,
      rejectUnauthorized: t.requestCert === true,
    }
    secureContext = tls.createSecureContext({
      key: t.key,
      cert: t.cert,
      ...(t.ca !== undefined ? { ca: t.ca } : {}),
    })
    if (options.http2 === true) {
      const h2 = http2.createSecureServer(
        {
          ...tlsOpts,
          allowHTTP1: true,
          settings: { maxConcurrentStreams: options.http2MaxConcurrentStreams ?? 250 },
        },
        handler as unknown as (
          req: http2.Http2ServerRequest,
          res: http2.Http2ServerResponse,
        ) => void,
      )
      inner = h2
    } else {
      inner = https.createServer(
        { ...tlsOpts, keepAliveTimeout: 0 },
        handler as unknown as http.RequestListener,
      )
    }
  } else {
    // Go's http.Server has no idle timeout by default: keep-alive sockets stay open.
    inner = http.createServer({ keepAliveTimeout: 0 }, handler as unknown as http.RequestListener)
  }
  if (inner instanceof http.Server || inner instanceof https.Server) {
    inner.keepAliveTimeout = 0
    inner.requestTimeout = 0
    inner.headersTimeout = 60_000
  }
  inner.on('clientError', (_err: Error, socket: net.Socket) => {
    socket.destroy()
  })
  inner.on('tlsClientError', () => {
    /* handshake failures (e.g. no client cert) just close */
  })
  // Peers that vanish mid-session are routine for a test server (faults, aborted watches).
  inner.on('sessionError', () => {
    /* the session is destroyed by node:http2 itself */
  })

  const ipKey = (s: net.Socket): string => s.remoteAddress ?? 'unknown'
  const outer = net.createServer((socket) => {
    if (closed) {
      socket.destroy()
      return
    }
    const ip = ipKey(socket)
    const n = perIp.get(ip) ?? 0
    // go-connlimit Accept: refuse when the IP already holds `limit` connections.
    if (maxConns > 0 && n >= maxConns) {
      rejected++
      events.emit('connectionRejected', { remoteAddress: ip })
      rejectOverLimit(socket, secureContext)
      return
    }
    perIp.set(ip, n + 1)
    socket.on('error', () => {
      /* ECONNRESET from a client going away; 'close' follows */
    })
    // agent.go tcpKeepAliveListener: TCP keep-alive every 30 s, so dead peers eventually go away.
    socket.setKeepAlive(true, 30_000)
    sockets.add(socket)
    peak = Math.max(peak, sockets.size)
    const deadlineKey = `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`
    if (handshakeTimeoutMs > 0) {
      handshakeDeadlines.set(
        deadlineKey,
        clock.setTimeout(() => {
          handshakeDeadlines.delete(deadlineKey)
          socket.destroy()
        }, handshakeTimeoutMs),
      )
    }
    socket.once('close', () => {
      handshakeDeadlines.get(deadlineKey)?.clear()
      handshakeDeadlines.delete(deadlineKey)
      sockets.delete(socket)
      const left = (perIp.get(ip) ?? 1) - 1
      if (left <= 0) perIp.delete(ip)
      else perIp.set(ip, left)
    })
    inner.emit('connection', socket)
  })

  await new Promise<void>((resolve, reject) => {
    outer.once('error', reject)
    outer.listen({ host, port: options.port ?? 0 }, () => {
      outer.off('error', reject)
      resolve()
    })
  })
  const address = outer.address() as net.AddressInfo
  const scheme = options.tls !== undefined ? 'https' : 'http'
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address

  const destroyAll = (): void => {
    for (const s of sockets) s.destroy()
  }

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true
      api.close()
      agent.close()
      stalled.clear()
      for (const t of handshakeDeadlines.values()) t.clear()
      handshakeDeadlines.clear()
      const done = new Promise<void>((resolve) =>
        outer.close(() => {
          resolve()
        }),
      )
      destroyAll()
      if (inner instanceof http.Server || inner instanceof https.Server) inner.closeAllConnections()
      await done
    })()
    return closing
  }

  const faults: ConsulFaults = Object.assign(faultState, {
    failNext(count: number, status = 500, body = 'No cluster leader'): void {
      for (let i = 0; i < count; i++) failQueue.push({ status, body })
    },
    rateLimitNext(count: number): void {
      // structs.ErrRateLimited text, as the agent's HTTP layer writes it.
      for (let i = 0; i < count; i++)
        failQueue.push({ status: 429, body: 'Rate limit reached, try again later' })
    },
    dropNextRequests(count: number): void {
      dropCount += count
    },
    dropConnections(): void {
      destroyAll()
    },
    regressIndex(to: number): void {
      catalog.regressIndex(to)
    },
  })

  const stats: ConsulStats = {
    openConnections: () => sockets.size,
    peakConnections: () => peak,
    rejectedConnections: () => rejected,
    blockingQueries: () => api.blockingCount,
    requests,
  }

  const server: ConsulTestServer = {
    url: `${scheme}://${urlHost}:${address.port}`,
    port: address.port,
    get index() {
      return catalog.index
    },
    faults,
    stats,
    events,
    close,
    [Symbol.asyncDispose]: close,
    addNode,
    removeNode: (name) => {
      catalog.deleteNode(name)
    },
    setNodeHealth: (name, status, output) => {
      setCheck(name, 'serfHealth', status, output === undefined ? {} : { output })
    },
    registerService(reg) {
      const node = reg.node ?? nodeName
      if (catalog.node(node) === undefined)
        throw new Error(`registerService: unknown node ${node} (call addNode first)`)
      const id = reg.id ?? reg.name
      const tagged = Object.fromEntries(
        Object.entries(reg.taggedAddresses ?? {}).map(([k, v]) => [
          k,
          { Address: v.address, Port: v.port },
        ]),
      )
      catalog.transaction(() => {
        catalog.ensureService({
          node,
          Kind: '',
          ID: id,
          Service: reg.name,
          Tags: [...(reg.tags ?? [])],
          Address: reg.address ?? '',
          TaggedAddresses: tagged,
          Meta: { ...(reg.meta ?? {}) },
          Port: reg.port ?? 0,
          Weights: { Passing: reg.weights?.passing ?? 1, Warning: reg.weights?.warning ?? 1 },
          EnableTagOverride: false,
        })
        const checks = reg.checks ?? []
        checks.forEach((c, i) => {
          const checkId = c.id ?? (checks.length > 1 ? `service:${id}:${i + 1}` : `service:${id}`)
          setCheck(node, checkId, c.status, {
            serviceId: id,
            ...(c.output !== undefined ? { output: c.output } : {}),
            ...(c.name !== undefined ? { name: c.name } : {}),
          })
        })
      })
    },
    removeService: (node, id) => catalog.deleteService(node, id),
    setCheck,
    restartAgent: (o = {}) => {
      if (o.dropConnections === true) destroyAll()
      agent.restart(o.persist === true)
    },
    reapNow: () => {
      agent.reapNow()
    },
    async waitForBlockingQueries(count = 1, timeoutMs = 5_000) {
      // count 0 means "until none is parked" (e.g. after a client closed its watches).
      const done = (): boolean =>
        count === 0 ? api.blockingCount === 0 : api.blockingCount >= count
      if (done()) return
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          events.off('blocking', check)
          events.off('unblocked', check)
          reject(
            new Error(
              `Timed out after ${timeoutMs} ms waiting for ${count === 0 ? 'no' : count} blocking queries (have ${api.blockingCount})`,
            ),
          )
        }, timeoutMs)
        timer.unref()
        const check = (): void => {
          if (!done()) return
          clearTimeout(timer)
          events.off('blocking', check)
          events.off('unblocked', check)
          resolve()
        }
        events.on('blocking', check)
        events.on('unblocked', check)
      })
    },
  }
  return server
}

/** Writes go-connlimit's raw 429 and closes; over TLS the bytes go through the handshake first, as in Go. */
function rejectOverLimit(socket: net.Socket, secureContext: tls.SecureContext | undefined): void {
  socket.on('error', () => {
    /* the client may already be gone */
  })
  // HTTPConnStateFuncWithDefault429Handler(10ms): a slow reader does not hold us up.
  const deadline = setTimeout(() => {
    socket.destroy()
  }, 1_000)
  deadline.unref()
  socket.once('close', () => {
    clearTimeout(deadline)
  })
  // Go writes the bytes and then Close()s at once: no waiting for the client's FIN. (A request the
  // client already sent stays unread, so the kernel may answer it with a RST, as with Consul.)
  if (secureContext === undefined) {
    socket.end(TOO_MANY_CONNS_RESPONSE, () => {
      socket.destroy()
    })
    return
  }
  const secure = new tls.TLSSocket(socket, { isServer: true, secureContext })
  secure.on('error', () => {
    socket.destroy()
  })
  secure.once('secure', () => {
    secure.end(TOO_MANY_CONNS_RESPONSE, () => {
      secure.destroy()
    })
  })
}

function destroyRequestConnection(
  req: ApiRequest & { socket?: net.Socket | null; stream?: http2.ServerHttp2Stream },
): void {
  const session = req.stream?.session
  if (session !== undefined) {
    session.destroy()
    return
  }
  req.socket?.destroy()
}
