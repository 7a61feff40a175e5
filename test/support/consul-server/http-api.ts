/**
 * The HTTP API: routing, query parsing, blocking queries, ACLs, JSON shapes and error texts.
 * Protocol rules are explained, with hashicorp/consul sources, in docs/design/consul.md; the short
 * file names used below (`http.go`, `bq.go`, `rpc.go`, `health_ep.go`, `agent.go`...) are listed
 * in its Sources table (docs/design/consul.md#sources).
 */
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { Clock, TimerHandle } from '../../../src/core/clock.js'
import type { Agent, AgentCheckDefinition } from './agent.js'
import { compileFilter, BexprError, type FieldSchema, type Filter } from './bexpr.js'
import type {
  Catalog,
  CheckRecord,
  CheckStatus,
  NodeRecord,
  ServiceAddress,
  ServiceRecord,
} from './catalog.js'
import { GoDurationError, parseGoDuration } from './go-duration.js'

/** The subset of node:http / node:http2 compat request objects the API reads. */
export interface ApiRequest {
  readonly method?: string | undefined
  readonly url?: string | undefined
  readonly headers: IncomingHttpHeaders
  readonly httpVersion: string
  on(event: 'data', fn: (chunk: Buffer) => void): unknown
  on(event: 'end' | 'close', fn: () => void): unknown
  on(event: 'error', fn: (err: Error) => void): unknown
}

/** The subset of node:http / node:http2 compat response objects the API writes. */
export interface ApiResponse {
  statusCode: number
  setHeader(name: string, value: string | number): unknown
  end(body?: string): unknown
  on(event: 'close', fn: () => void): unknown
  readonly writableEnded: boolean
}

export interface AclConfig {
  readonly enabled: boolean
  readonly masterToken: string
  readonly tokens?: Readonly<Record<string, { readonly write: boolean; readonly read?: boolean }>>
}

export interface ApiConfig {
  readonly datacenter: string
  readonly nodeName: string
  readonly acl: AclConfig | undefined
  readonly maxWaitMs: number
  readonly defaultWaitMs: number
  readonly clock: Clock
  readonly random: () => number
}

/** Switches that make the server misbehave the way real Consul agents sometimes do. */
export interface FaultState {
  /** Old agents: 200 on deregistering an unknown service, 500 "does not have associated TTL" for an unknown check. */
  legacyStatusCodes: boolean
  /** No leader: default-consistency reads fail with 500 "No cluster leader"; `?stale` reads still answer. */
  leaderless: boolean
  /** Answer health blocking queries as the streaming backend does (no KnownLeader/LastContact headers). */
  streamingBackend: boolean
  /** Emit `X-Consul-Index: 0` as old or buggy versions did (blocking.mdx "Sanity check"). */
  zeroIndex: boolean
  /** Answer every blocking query at once, unchanged (hashicorp/consul#1244 "never blocks"). */
  neverBlock: boolean
}

export class HttpError extends Error {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.headers = headers
  }
}

interface ReadResult {
  readonly index: number
  readonly body: unknown
  readonly filteredByAcl?: boolean
}

interface Waiter {
  recheck(abandon: boolean): void
  /** Drops the query without answering (server shutdown): clears its timer, resolves its handler. */
  cancel(): void
}

type Authz =
  | { readonly kind: 'disabled' }
  | { readonly kind: 'anonymous'; readonly accessor: string }
  | {
      readonly kind: 'token'
      readonly accessor: string
      readonly read: boolean
      readonly write: boolean
      readonly master: boolean
    }

/** Events the API reports (the server re-emits them). */
export interface ApiHooks {
  blockingStarted(info: { path: string; minIndex: number; timeoutMs: number }): void
  blockingEnded(info: {
    path: string
    minIndex: number
    index: number
    reason: 'change' | 'timeout' | 'abandon' | 'client-closed'
  }): void
}

const ANONYMOUS_ACCESSOR = '00000000-0000-0000-0000-000000000002'
const JSON_TYPE = 'application/json'
const TEXT_TYPE = 'text/plain; charset=utf-8'

const NODE_SCHEMA = {
  ID: 'value',
  Node: 'value',
  Address: 'value',
  Datacenter: 'value',
  TaggedAddresses: 'map',
  Meta: 'map',
} as const
const SERVICE_SCHEMA = {
  Kind: 'value',
  ID: 'value',
  Service: 'value',
  Tags: 'list',
  Address: 'value',
  TaggedAddresses: 'map',
  Meta: 'map',
  Port: 'value',
  Weights: { Passing: 'value', Warning: 'value' },
  EnableTagOverride: 'value',
} as const
const CHECK_SCHEMA = {
  Node: 'value',
  CheckID: 'value',
  Name: 'value',
  Status: 'value',
  Notes: 'value',
  Output: 'value',
  ServiceID: 'value',
  ServiceName: 'value',
  ServiceTags: 'list',
  Type: 'value',
} as const
const HEALTH_SCHEMA: FieldSchema = {
  Node: NODE_SCHEMA,
  Service: SERVICE_SCHEMA,
  Checks: [CHECK_SCHEMA],
}
const CATALOG_SCHEMA: FieldSchema = {
  ID: 'value',
  Node: 'value',
  Address: 'value',
  Datacenter: 'value',
  TaggedAddresses: 'map',
  NodeMeta: 'map',
  ServiceKind: 'value',
  ServiceID: 'value',
  ServiceName: 'value',
  ServiceTags: 'list',
  ServiceAddress: 'value',
  ServiceTaggedAddresses: 'map',
  ServiceWeights: { Passing: 'value', Warning: 'value' },
  ServiceMeta: 'map',
  ServicePort: 'value',
  ServiceEnableTagOverride: 'value',
}
const AGENT_SERVICE_SCHEMA: FieldSchema = SERVICE_SCHEMA

export class ConsulApi {
  readonly #catalog: Catalog
  readonly #agent: Agent
  readonly #cfg: ApiConfig
  readonly #faults: FaultState
  readonly #hooks: ApiHooks
  readonly #waiters = new Set<Waiter>()
  readonly #unsubscribe: () => void
  #closed = false

  constructor(
    catalog: Catalog,
    agent: Agent,
    config: ApiConfig,
    faults: FaultState,
    hooks: ApiHooks,
  ) {
    this.#catalog = catalog
    this.#agent = agent
    this.#cfg = config
    this.#faults = faults
    this.#hooks = hooks
    this.#unsubscribe = catalog.subscribe((abandon) => {
      for (const w of [...this.#waiters]) w.recheck(abandon)
    })
  }

  /** Blocking queries currently parked. */
  get blockingCount(): number {
    return this.#waiters.size
  }

  close(): void {
    this.#closed = true
    this.#unsubscribe()
    for (const w of [...this.#waiters]) w.cancel()
    this.#waiters.clear()
  }

  async handle(req: ApiRequest, res: ApiResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://consul')
    const method = (req.method ?? 'GET').toUpperCase()
    this.#setCommonHeaders(res)
    try {
      const body = method === 'PUT' || method === 'POST' ? await readBody(req) : ''
      await this.#route(method, url, req, res, body)
    } catch (err) {
      if (res.writableEnded) return
      if (err instanceof HttpError) {
        for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v)
        sendText(res, err.status, err.message)
      } else {
        sendText(res, 500, err instanceof Error ? err.message : String(err))
      }
    }
  }

  #setCommonHeaders(res: ApiResponse): void {
    // Newer agents send the default policy on every wrapped endpoint (http.go).
    res.setHeader('X-Consul-Default-Acl-Policy', this.#cfg.acl?.enabled === true ? 'deny' : 'allow')
  }

  async #route(
    method: string,
    url: URL,
    req: ApiRequest,
    res: ApiResponse,
    body: string,
  ): Promise<void> {
    const path = url.pathname
    const q = url.searchParams
    const route = (prefix: string): string | undefined => {
      if (!path.startsWith(prefix)) return undefined
      try {
        return decodeURIComponent(path.slice(prefix.length))
      } catch {
        // Go's server rejects a malformed escape before any handler runs.
        throw new HttpError(400, '400 Bad Request')
      }
    }
    // Each endpoint is registered with its methods; OPTIONS is always allowed (http.go `MethodNotAllowedError`).
    const allow = (...methods: string[]): boolean => {
      if (method === 'OPTIONS') {
        res.setHeader('Allow', ['OPTIONS', ...methods].join(','))
        res.statusCode = 200
        res.end()
        return false
      }
      if (methods.includes(method)) return true
      throw new HttpError(405, `method ${method} not allowed`, {
        Allow: ['OPTIONS', ...methods].join(','),
      })
    }
    let rest: string | undefined
    if ((rest = route('/v1/health/service/')) !== undefined) {
      if (!allow('GET')) return
      await this.#healthService(rest, q, req, res, url)
    } else if ((rest = route('/v1/catalog/service/')) !== undefined) {
      if (!allow('GET')) return
      await this.#catalogService(rest, q, req, res, url)
    } else if (path === '/v1/catalog/services') {
      if (!allow('GET')) return
      await this.#catalogServices(q, req, res, url)
    } else if (path === '/v1/agent/service/register') {
      if (!allow('PUT')) return
      this.#register(q, req, body)
      sendEmpty(res)
    } else if ((rest = route('/v1/agent/service/deregister/')) !== undefined) {
      if (!allow('PUT')) return
      this.#deregister(rest, q, req)
      sendEmpty(res)
    } else if ((rest = route('/v1/agent/service/maintenance/')) !== undefined) {
      if (!allow('PUT')) return
      this.#serviceMaintenance(rest, q, req)
      sendEmpty(res)
    } else if (path === '/v1/agent/maintenance') {
      if (!allow('PUT')) return
      this.#nodeMaintenance(q, req)
      sendEmpty(res)
    } else if (path === '/v1/agent/services') {
      if (!allow('GET')) return
      this.#agentServices(q, req, res)
    } else if ((rest = route('/v1/agent/service/')) !== undefined) {
      if (!allow('GET')) return
      this.#agentService(rest, q, req, res)
    } else if (path === '/v1/agent/checks') {
      if (!allow('GET')) return
      this.#agentChecks(q, req, res)
    } else if ((rest = route('/v1/agent/check/pass/')) !== undefined) {
      if (!allow('PUT')) return
      this.#ttlUpdate(rest, 'passing', q.get('note') ?? '', q, req)
      sendEmpty(res)
    } else if ((rest = route('/v1/agent/check/warn/')) !== undefined) {
      if (!allow('PUT')) return
      this.#ttlUpdate(rest, 'warning', q.get('note') ?? '', q, req)
      sendEmpty(res)
    } else if ((rest = route('/v1/agent/check/fail/')) !== undefined) {
      if (!allow('PUT')) return
      this.#ttlUpdate(rest, 'critical', q.get('note') ?? '', q, req)
      sendEmpty(res)
    } else if ((rest = route('/v1/agent/check/update/')) !== undefined) {
      if (!allow('PUT')) return
      const update = decodeJson(body)
      if (update === undefined) throw decodeFail(goJsonError(body))
      if (!isObject(update))
        throw decodeFail(
          `json: cannot unmarshal ${jsonType(update)} into Go value of type agent.checkUpdate`,
        )
      const fields = canonicalKeys(update, ['Status', 'Output'])
      const status = typeof fields.Status === 'string' ? fields.Status : ''
      if (status !== 'passing' && status !== 'warning' && status !== 'critical') {
        throw new HttpError(400, `Invalid check status: '${status}'`)
      }
      this.#ttlUpdate(rest, status, typeof fields.Output === 'string' ? fields.Output : '', q, req)
      sendEmpty(res)
    } else if (path === '/v1/status/leader') {
      if (!allow('GET')) return
      sendJson(res, this.#faults.leaderless ? '' : '127.0.0.1:8300', q)
    } else if (path === '/v1/agent/self') {
      if (!allow('GET')) return
      const node = this.#catalog.node(this.#cfg.nodeName)
      sendJson(
        res,
        {
          Config: {
            Datacenter: this.#cfg.datacenter,
            NodeName: this.#cfg.nodeName,
            NodeID: node?.ID ?? '',
            Server: true,
            Version: '1.20.0',
          },
          Member: {
            Name: this.#cfg.nodeName,
            Addr: node?.Address ?? '',
            Tags: { dc: this.#cfg.datacenter, role: 'consul' },
            Status: 1,
          },
        },
        q,
      )
    } else if (path.startsWith('/v1/')) {
      throw new HttpError(404, 'Invalid URL path: not a recognized HTTP API endpoint')
    } else {
      res.statusCode = 404
      res.end()
    }
  }

  // ---- ACL ---------------------------------------------------------------------------------

  /** Token precedence: `?token=`, `X-Consul-Token`, `Authorization: Bearer` (http.go `parseTokenInternal`). */
  #token(q: URLSearchParams, req: ApiRequest): string {
    const fromQuery = q.get('token')
    if (fromQuery !== null && fromQuery !== '') return fromQuery
    const header = req.headers['x-consul-token']
    const h = Array.isArray(header) ? header[0] : header
    if (h !== undefined && h !== '') return h
    const auth = req.headers.authorization
    if (auth !== undefined && auth !== '') {
      // `<Scheme> <Value>`; only Bearer counts, and only the first word of the value.
      const parts = auth.split(' ')
      if (parts.length > 1 && parts[0]?.toLowerCase() === 'bearer') {
        return parts.slice(1).join(' ').trim().split(' ')[0]?.trim() ?? ''
      }
    }
    return ''
  }

  #authorize(q: URLSearchParams, req: ApiRequest): Authz {
    const acl = this.#cfg.acl
    if (acl?.enabled !== true) return { kind: 'disabled' }
    const token = this.#token(q, req)
    if (token === '') return { kind: 'anonymous', accessor: ANONYMOUS_ACCESSOR }
    if (token === acl.masterToken)
      return { kind: 'token', accessor: accessorOf(token), read: true, write: true, master: true }
    const t = acl.tokens?.[token]
    // acl.ErrNotFound → 403 (http.go isForbidden).
    if (t === undefined) throw new HttpError(403, 'ACL not found')
    return {
      kind: 'token',
      accessor: accessorOf(token),
      read: t.read ?? true,
      write: t.write,
      master: false,
    }
  }

  #canRead(a: Authz): boolean {
    return a.kind === 'disabled' || (a.kind === 'token' && a.read)
  }

  /** acl.PermissionDeniedError text: `Permission denied: token with AccessorID '<id>' lacks permission 'service:write' on "<name>"`. */
  #requireWrite(a: Authz, resource: 'service' | 'node', name: string): void {
    if (a.kind === 'disabled' || (a.kind === 'token' && a.write)) return
    throw new HttpError(
      403,
      `Permission denied: token with AccessorID '${a.accessor}' lacks permission '${resource}:write' on ${JSON.stringify(name)}`,
    )
  }

  // ---- reads and blocking ------------------------------------------------------------------

  /** Shared parsing of `dc`, consistency and `wait`/`index` (http.go `parse`, `parseConsistency`, `parseWait`). */
  #parseQuery(q: URLSearchParams): {
    minIndex: number
    waitMs: number
    consistency: 'leader' | 'stale' | 'consistent'
  } {
    const dc = q.get('dc')
    if (dc !== null && dc !== '' && dc !== this.#cfg.datacenter)
      throw new HttpError(500, 'No path to datacenter')
    const stale = q.has('stale')
    const consistent = q.has('consistent')
    if (stale && consistent)
      throw new HttpError(400, 'Cannot specify ?stale with ?consistent, conflicting semantics.')
    const maxStale = q.get('max_stale')
    let staleAllowed = stale
    if (maxStale !== null && maxStale !== '') {
      let ns: number
      try {
        ns = parseGoDuration(maxStale)
      } catch {
        throw new HttpError(400, `Invalid max_stale value ${JSON.stringify(maxStale)}`)
      }
      if (ns > 0) staleAllowed = true
    }
    if (staleAllowed && consistent)
      throw new HttpError(400, 'Cannot specify ?stale with ?consistent, conflicting semantics.')
    if (q.has('cached') && consistent)
      throw new HttpError(400, 'Cannot specify ?cached with ?consistent, conflicting semantics.')
    let waitMs = 0
    const wait = q.get('wait')
    if (wait !== null && wait !== '') {
      try {
        waitMs = parseGoDuration(wait) / 1e6
      } catch (err) {
        if (err instanceof GoDurationError) throw new HttpError(400, 'Invalid wait time')
        throw err
      }
    }
    let minIndex = 0
    const index = q.get('index')
    if (index !== null && index !== '') {
      // strconv.ParseUint: decimal digits only, must fit in uint64.
      if (!/^[0-9]+$/.test(index) || BigInt(index) > 0xffff_ffff_ffff_ffffn)
        throw new HttpError(400, 'Invalid index')
      minIndex = Number(index)
    }
    if (this.#faults.leaderless && !staleAllowed) throw new HttpError(500, 'No cluster leader')
    return {
      minIndex,
      waitMs,
      consistency: staleAllowed ? 'stale' : consistent ? 'consistent' : 'leader',
    }
  }

  #compileFilter(q: URLSearchParams, schema: FieldSchema): Filter | undefined {
    const expr = q.get('filter')
    if (expr === null || expr === '') return undefined
    try {
      return compileFilter(expr, schema)
    } catch (err) {
      if (err instanceof BexprError)
        throw new HttpError(500, `Failed to create boolean expression evaluator: ${err.message}`)
      throw err
    }
  }

  /**
   * The blocking-query loop of `bq.go`: answer at once when `index` is 0/absent or older than the
   * current index; otherwise hold until a write moves the index past it, a snapshot restore
   * abandons the query, or the wait (clamped to max_query_time, default 5 min, plus up to wait/16
   * jitter, `rpc.go`) runs out. A timeout answers 200 with the same index.
   */
  async #blockingRead(
    path: string,
    q: URLSearchParams,
    res: ApiResponse,
    indexOf: () => number,
    query: () => ReadResult,
    opts: { streaming?: boolean } = {},
  ): Promise<void> {
    const parsed = this.#parseQuery(q)
    const { waitMs, consistency } = parsed
    let { minIndex } = parsed
    const send = (r: ReadResult): void => {
      this.#sendRead(res, q, r, consistency, opts.streaming === true && minIndex > 0)
    }
    const first = query()
    // An agent that reports index 0 has a state index of 0 as far as its clients can tell: any
    // index ≥ 1 they send is "current", so the query parks until the next relevant write.
    if (this.#faults.zeroIndex && minIndex > 0)
      minIndex = Math.max(minIndex, normalizeIndex(first.index))
    if (minIndex === 0 || normalizeIndex(first.index) > minIndex || this.#faults.neverBlock) {
      send(first)
      return
    }
    let base = waitMs > 0 ? waitMs : this.#cfg.defaultWaitMs
    if (base > this.#cfg.maxWaitMs) base = this.#cfg.maxWaitMs
    const timeoutMs = base + this.#cfg.random() * (base / 16)
    await new Promise<void>((resolve) => {
      const finish = (
        reason: 'change' | 'timeout' | 'abandon' | 'client-closed',
        r?: ReadResult,
      ): void => {
        if (!this.#waiters.delete(waiter)) return
        timer.clear()
        if (r !== undefined && !res.writableEnded) send(r)
        this.#hooks.blockingEnded({ path, minIndex, index: r?.index ?? 0, reason })
        resolve()
      }
      const waiter: Waiter = {
        recheck: (abandon) => {
          if (this.#closed) return
          // The index is cheap; the body is only built when the query is about to answer.
          if (abandon) finish('abandon', query())
          else if (normalizeIndex(indexOf()) > minIndex) finish('change', query())
        },
        cancel: () => {
          this.#waiters.delete(waiter)
          timer.clear()
          resolve()
        },
      }
      this.#waiters.add(waiter)
      const timer: TimerHandle = this.#cfg.clock.setTimeout(() => {
        finish('timeout', query())
      }, timeoutMs)
      res.on('close', () => {
        finish('client-closed')
      })
      this.#hooks.blockingStarted({ path, minIndex, timeoutMs })
    })
  }

  #sendRead(
    res: ApiResponse,
    q: URLSearchParams,
    r: ReadResult,
    consistency: string,
    streaming: boolean,
  ): void {
    // setIndex never sends 0: clients would busy-loop (http.go, blocking.mdx "Sanity check").
    res.setHeader('X-Consul-Index', this.#faults.zeroIndex ? '0' : String(normalizeIndex(r.index)))
    if (streaming && this.#faults.streamingBackend) {
      res.setHeader('X-Consul-Query-Backend', 'streaming')
    } else {
      res.setHeader('X-Consul-Knownleader', this.#faults.leaderless ? 'false' : 'true')
      res.setHeader('X-Consul-Lastcontact', '0')
      res.setHeader('X-Consul-Query-Backend', 'blocking-query')
    }
    res.setHeader('X-Consul-Effective-Consistency', consistency)
    if (r.filteredByAcl === true) res.setHeader('X-Consul-Results-Filtered-By-Acls', 'true')
    // setCacheMeta: Age is only sent on a hit; this agent never has a warm cache.
    if (q.has('cached')) res.setHeader('X-Cache', 'MISS')
    sendJson(res, r.body, q)
  }

  async #healthService(
    name: string,
    q: URLSearchParams,
    req: ApiRequest,
    res: ApiResponse,
    url: URL,
  ): Promise<void> {
    if (name === '') throw new HttpError(400, 'Missing service name')
    const authz = this.#authorize(q, req)
    const passing = parseBoolParam(q, 'passing')
    if (passing === 'invalid') throw new HttpError(400, 'Invalid value for ?passing')
    const filter = this.#compileFilter(q, HEALTH_SCHEMA)
    const tags = q.getAll('tag')
    const nodeMeta = parseNodeMeta(q)
    const query = (): ReadResult => {
      const index = this.#catalog.serviceIndex(name)
      let entries = this.#catalog
        .serviceInstances(name)
        .filter((s) => hasTags(s, tags))
        .map((s) => this.#serviceEntry(s))
        .filter((e): e is NonNullable<typeof e> => e !== null)
        .filter((e) => matchesNodeMeta(e.Node.Meta, nodeMeta))
      if (filter !== undefined) entries = entries.filter((e) => filter.matches(e))
      // filterNonPassing runs on the agent after the query (health_ep.go): the index is unaffected.
      if (passing) entries = filterNonPassing(entries)
      return this.#aclFilter(authz, index, entries)
    }
    await this.#blockingRead(url.pathname, q, res, () => this.#catalog.serviceIndex(name), query, {
      streaming: q.get('near') === null,
    })
  }

  async #catalogService(
    name: string,
    q: URLSearchParams,
    req: ApiRequest,
    res: ApiResponse,
    url: URL,
  ): Promise<void> {
    if (name === '') throw new HttpError(400, 'Missing service name')
    const authz = this.#authorize(q, req)
    const filter = this.#compileFilter(q, CATALOG_SCHEMA)
    const tags = q.getAll('tag')
    const nodeMeta = parseNodeMeta(q)
    const query = (): ReadResult => {
      const index = this.#catalog.serviceIndex(name)
      let rows = this.#catalog
        .serviceInstances(name)
        .filter((s) => hasTags(s, tags))
        .map((s) => this.#catalogRow(s))
        .filter((r): r is NonNullable<typeof r> => r !== null)
        .filter((r) => matchesNodeMeta(r.NodeMeta, nodeMeta))
      if (filter !== undefined) rows = rows.filter((r) => filter.matches(r))
      return this.#aclFilter(authz, index, rows)
    }
    await this.#blockingRead(url.pathname, q, res, () => this.#catalog.serviceIndex(name), query)
  }

  async #catalogServices(
    q: URLSearchParams,
    req: ApiRequest,
    res: ApiResponse,
    url: URL,
  ): Promise<void> {
    const authz = this.#authorize(q, req)
    const query = (): ReadResult => {
      const out: Record<string, string[]> = {}
      for (const s of this.#catalog.allServices()) {
        const tags = (out[s.Service] ??= [])
        for (const t of s.Tags) if (!tags.includes(t)) tags.push(t)
      }
      const index = this.#catalog.tablesIndex('services')
      if (this.#canRead(authz)) return { index, body: out }
      return {
        index,
        body: {},
        filteredByAcl: authz.kind === 'token' && Object.keys(out).length > 0,
      }
    }
    await this.#blockingRead(
      url.pathname,
      q,
      res,
      () => this.#catalog.tablesIndex('services'),
      query,
    )
  }

  /** Default-deny ACLs filter reads instead of rejecting them; the header is blanked for anonymous requests (rpc.go). */
  #aclFilter(authz: Authz, index: number, rows: unknown[]): ReadResult {
    if (this.#canRead(authz)) return { index, body: rows }
    return { index, body: [], filteredByAcl: authz.kind === 'token' && rows.length > 0 }
  }

  #serviceEntry(s: ServiceRecord): {
    Node: ReturnType<typeof nodeJson>
    Service: ReturnType<typeof nodeServiceJson>
    Checks: ReturnType<typeof checkJson>[]
  } | null {
    const node = this.#catalog.node(s.node)
    if (node === undefined) return null
    return {
      Node: nodeJson(node),
      Service: nodeServiceJson(s),
      Checks: this.#catalog.checksFor(s.node, s.ID).map(checkJson),
    }
  }

  #catalogRow(
    s: ServiceRecord,
  ): (Record<string, unknown> & { NodeMeta: Record<string, string> }) | null {
    const node = this.#catalog.node(s.node)
    if (node === undefined) return null
    return {
      ID: node.ID,
      Node: node.Node,
      Address: node.Address,
      Datacenter: node.Datacenter,
      TaggedAddresses: { ...node.TaggedAddresses },
      NodeMeta: { ...node.Meta },
      ServiceKind: s.Kind,
      ServiceID: s.ID,
      ServiceName: s.Service,
      ServiceTags: [...s.Tags],
      ServiceAddress: s.Address,
      ServiceTaggedAddresses: cloneTagged(s.TaggedAddresses),
      ServiceWeights: { ...s.Weights },
      ServiceMeta: { ...s.Meta },
      ServicePort: s.Port,
      ServiceEnableTagOverride: s.EnableTagOverride,
      ServiceProxy: { Mode: '', MeshGateway: {}, Expose: {} },
      ServiceConnect: {},
      CreateIndex: s.CreateIndex,
      ModifyIndex: s.ModifyIndex,
    }
  }

  // ---- agent endpoints ---------------------------------------------------------------------

  #agentServiceJson(
    s: Omit<ServiceRecord, 'CreateIndex' | 'ModifyIndex'>,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    if (s.Kind !== '') out.Kind = s.Kind
    Object.assign(out, {
      ID: s.ID,
      Service: s.Service,
      Tags: [...s.Tags],
      Meta: { ...s.Meta },
      Port: s.Port,
      Address: s.Address,
    })
    if (Object.keys(s.TaggedAddresses).length > 0)
      out.TaggedAddresses = cloneTagged(s.TaggedAddresses)
    Object.assign(out, {
      Weights: { ...s.Weights },
      EnableTagOverride: s.EnableTagOverride,
      Datacenter: this.#cfg.datacenter,
    })
    return out
  }

  #agentServices(q: URLSearchParams, req: ApiRequest, res: ApiResponse): void {
    const authz = this.#authorize(q, req)
    const filter = this.#compileFilter(q, AGENT_SERVICE_SCHEMA)
    const out: Record<string, unknown> = {}
    let total = 0
    for (const s of this.#agent.services()) {
      const json = this.#agentServiceJson(s)
      if (filter !== undefined && !filter.matches(json)) continue
      total++
      if (this.#canRead(authz)) out[s.ID] = json
    }
    // Agent-local endpoints set the header themselves, and only for requests with a token.
    if (authz.kind === 'token')
      res.setHeader('X-Consul-Results-Filtered-By-Acls', String(total !== Object.keys(out).length))
    sendJson(res, out, q)
  }

  #agentService(id: string, q: URLSearchParams, req: ApiRequest, res: ApiResponse): void {
    const authz = this.#authorize(q, req)
    const s = this.#agent.service(id)
    if (s === undefined) throw new HttpError(404, `unknown service ID: ${id}`)
    if (!this.#canRead(authz)) {
      const accessor = authz.kind === 'disabled' ? '' : authz.accessor
      throw new HttpError(
        403,
        `Permission denied: token with AccessorID '${accessor}' lacks permission 'service:read' on ${JSON.stringify(s.Service)}`,
      )
    }
    const json = this.#agentServiceJson(s)
    const hash = createHash('sha256').update(JSON.stringify(json)).digest('hex').slice(0, 16)
    json.ContentHash = hash
    res.setHeader('X-Consul-Contenthash', hash)
    sendJson(res, json, q)
  }

  #agentChecks(q: URLSearchParams, req: ApiRequest, res: ApiResponse): void {
    const authz = this.#authorize(q, req)
    const out: Record<string, unknown> = {}
    let total = 0
    for (const c of this.#agent.checks()) {
      const rec = this.#catalog.check(this.#cfg.nodeName, c.def.CheckID)
      if (rec === undefined) continue
      total++
      // The agent's own view: its local status and output, even while an output-only change
      // waits for check_update_interval before reaching the catalog.
      if (this.#canRead(authz))
        out[c.def.CheckID] = {
          ...checkJson(rec),
          Status: c.status,
          Output: c.output,
          CreateIndex: 0,
          ModifyIndex: 0,
        }
    }
    if (authz.kind === 'token')
      res.setHeader('X-Consul-Results-Filtered-By-Acls', String(total !== Object.keys(out).length))
    sendJson(res, out, q)
  }

  #register(q: URLSearchParams, req: ApiRequest, body: string): void {
    // AgentRegisterService order: decode, name, address, resolve the token (403 "ACL not found"),
    // then weights/meta/check validation, then the service:write permission.
    let parsed: ReturnType<typeof parseRegistration> | undefined
    let invalid: unknown
    try {
      parsed = parseRegistration(body, this.#cfg.nodeName)
    } catch (err) {
      if (
        !(err instanceof HttpError) ||
        /^(Request decode failed|Missing service name|Invalid service address)/.test(err.message)
      )
        throw err
      invalid = err
    }
    const authz = this.#authorize(q, req)
    if (parsed === undefined) throw invalid
    const { service, checks } = parsed
    for (const c of checks) {
      if (c.Status !== undefined && !['passing', 'warning', 'critical'].includes(c.Status)) {
        throw new HttpError(400, "Status for checks must 'passing', 'warning', 'critical'")
      }
    }
    this.#requireWrite(authz, 'service', service.Service)
    // replace-existing-checks: present with no value or "true" (agent_endpoint.go).
    const rec = q.getAll('replace-existing-checks')
    const replace =
      rec.length > 0 &&
      (q.get('replace-existing-checks') === '' || q.get('replace-existing-checks') === 'true')
    this.#agent.register(service, checks, replace)
  }

  #deregister(id: string, q: URLSearchParams, req: ApiRequest): void {
    const authz = this.#authorize(q, req)
    const svc = this.#agent.service(id)
    if (svc === undefined) {
      if (this.#faults.legacyStatusCodes) return
      // acl.go vetServiceUpdateWithAuthorizer
      throw new HttpError(
        404,
        `Unknown service ID ${JSON.stringify(id)}. Ensure that the service ID is passed, not the service name.`,
      )
    }
    this.#requireWrite(authz, 'service', svc.Service)
    this.#agent.deregister(id)
  }

  /** `enable` must be present and a Go bool (agent_endpoint.go `AgentServiceMaintenance`). */
  #parseEnable(q: URLSearchParams): boolean {
    if (!q.has('enable')) throw new HttpError(400, 'Missing value for enable')
    const raw = q.get('enable') ?? ''
    if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return true
    if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return false
    throw new HttpError(400, `Invalid value for enable: ${JSON.stringify(raw)}`)
  }

  #serviceMaintenance(id: string, q: URLSearchParams, req: ApiRequest): void {
    if (id === '') throw new HttpError(400, 'Missing service ID')
    const enable = this.#parseEnable(q)
    const authz = this.#authorize(q, req)
    const svc = this.#agent.service(id)
    if (svc === undefined) {
      throw new HttpError(
        404,
        `Unknown service ID ${JSON.stringify(id)}. Ensure that the service ID is passed, not the service name.`,
      )
    }
    this.#requireWrite(authz, 'service', svc.Service)
    this.#agent.setServiceMaintenance(id, enable, q.get('reason') ?? '')
  }

  #nodeMaintenance(q: URLSearchParams, req: ApiRequest): void {
    const enable = this.#parseEnable(q)
    this.#requireWrite(this.#authorize(q, req), 'node', this.#cfg.nodeName)
    this.#agent.setNodeMaintenance(enable, q.get('reason') ?? '')
  }

  #ttlUpdate(
    checkId: string,
    status: CheckStatus,
    output: string,
    q: URLSearchParams,
    req: ApiRequest,
  ): void {
    const authz = this.#authorize(q, req)
    const check = this.#agent.check(checkId)
    const noTtl = new HttpError(
      500,
      `CheckID ${JSON.stringify(checkId)} does not have associated TTL`,
    )
    if (check === undefined) {
      if (this.#faults.legacyStatusCodes) throw noTtl
      // acl.go vetCheckUpdateWithAuthorizer
      throw new HttpError(
        404,
        `Unknown check ID ${JSON.stringify(checkId)}. Ensure that the check ID is passed, not the check name.`,
      )
    }
    const svc = check.def.ServiceID === '' ? undefined : this.#agent.service(check.def.ServiceID)
    if (svc === undefined) this.#requireWrite(authz, 'node', this.#cfg.nodeName)
    else this.#requireWrite(authz, 'service', svc.Service)
    if (this.#agent.updateTTL(checkId, status, output) !== 'ok') throw noTtl
  }
}

// ---- JSON shapes (PascalCase, docs/design/consul.md#response-shapes) ----------------------

function nodeJson(n: NodeRecord): NodeRecord {
  return {
    ID: n.ID,
    Node: n.Node,
    Address: n.Address,
    Datacenter: n.Datacenter,
    TaggedAddresses: { ...n.TaggedAddresses },
    Meta: { ...n.Meta },
    CreateIndex: n.CreateIndex,
    ModifyIndex: n.ModifyIndex,
  }
}

function nodeServiceJson(s: ServiceRecord): Record<string, unknown> & { Tags: string[] } {
  const out = {} as Record<string, unknown> & { Tags: string[] }
  if (s.Kind !== '') out.Kind = s.Kind
  out.ID = s.ID
  out.Service = s.Service
  out.Tags = [...s.Tags]
  out.Address = s.Address
  if (Object.keys(s.TaggedAddresses).length > 0)
    out.TaggedAddresses = cloneTagged(s.TaggedAddresses)
  Object.assign(out, {
    Meta: { ...s.Meta },
    Port: s.Port,
    Weights: { ...s.Weights },
    EnableTagOverride: s.EnableTagOverride,
    Proxy: { Mode: '', MeshGateway: {}, Expose: {} },
    Connect: {},
    PeerName: '',
    CreateIndex: s.CreateIndex,
    ModifyIndex: s.ModifyIndex,
  })
  return out
}

function checkJson(c: CheckRecord): Record<string, unknown> & { Status: CheckStatus } {
  return {
    Node: c.Node,
    CheckID: c.CheckID,
    Name: c.Name,
    Status: c.Status,
    Notes: c.Notes,
    Output: c.Output,
    ServiceID: c.ServiceID,
    ServiceName: c.ServiceName,
    ServiceTags: [...c.ServiceTags],
    Type: c.Type,
    Interval: c.Interval,
    Timeout: c.Timeout,
    ExposedPort: c.ExposedPort,
    Definition: {},
    CreateIndex: c.CreateIndex,
    ModifyIndex: c.ModifyIndex,
  }
}

function cloneTagged(t: Record<string, ServiceAddress>): Record<string, ServiceAddress> {
  return Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, { Address: v.Address, Port: v.Port }]),
  )
}

// ---- registration body -------------------------------------------------------------------

const SERVICE_FIELDS = [
  'ID',
  'Name',
  'Tags',
  'Address',
  'TaggedAddresses',
  'Meta',
  'Port',
  'Kind',
  'Check',
  'Checks',
  'EnableTagOverride',
  'Weights',
  'Proxy',
  'Connect',
  'Namespace',
  'Partition',
  'SocketPath',
] as const
const CHECK_FIELDS = [
  'CheckID',
  'ID',
  'Name',
  'Notes',
  'Status',
  'HTTP',
  'Method',
  'Header',
  'Body',
  'TLSSkipVerify',
  'TLSServerName',
  'TCP',
  'UDP',
  'GRPC',
  'GRPCUseTLS',
  'Args',
  'ScriptArgs',
  'Interval',
  'Timeout',
  'TTL',
  'DeregisterCriticalServiceAfter',
  'SuccessBeforePassing',
  'FailuresBeforeWarning',
  'FailuresBeforeCritical',
  'AliasNode',
  'AliasService',
  'DockerContainerID',
  'Shell',
  'H2PING',
  'OutputMaxSize',
  'ServiceID',
] as const

/**
 * Go's encoding/json matches field names case-insensitively, and Consul also accepts snake_case
 * aliases (`enable_tag_override`, `deregister_critical_service_after`). Only struct field names
 * are translated; map keys (Meta, TaggedAddresses, Header) are user data and stay as sent.
 */
function canonicalKeys(
  obj: Record<string, unknown>,
  fields: readonly string[],
): Record<string, unknown> {
  const byLoose = new Map(fields.map((f) => [f.toLowerCase(), f]))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(obj)) {
    const canon = byLoose.get(k.toLowerCase().replaceAll('_', ''))
    if (canon !== undefined && !(canon in out)) out[canon] = v
  }
  return out
}

function decodeFail(reason: string): HttpError {
  return new HttpError(400, `Request decode failed: ${reason}`)
}

function jsonType(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v === 'object' ? 'object' : typeof v
}

function expect(
  v: unknown,
  kind: 'string' | 'number' | 'boolean' | 'object' | 'array',
  field: string,
  goType: string,
): void {
  if (v === undefined || v === null) return
  if (jsonType(v) !== kind)
    throw decodeFail(
      `json: cannot unmarshal ${jsonType(v)} into Go struct field ${field} of type ${goType}`,
    )
}

/** A Go duration field of CheckType: strings via time.ParseDuration, numbers as nanoseconds (check_type.go). */
function durationMs(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v === 'number') return v / 1e6
  if (typeof v !== 'string')
    throw decodeFail(`json: cannot unmarshal ${jsonType(v)} into Go value of type time.Duration`)
  try {
    return parseGoDuration(v) / 1e6
  } catch (err) {
    if (err instanceof GoDurationError) throw decodeFail(err.message)
    throw err
  }
}

function stringMap(v: unknown, field: string): Record<string, string> {
  expect(v, 'object', field, 'map[string]string')
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries((v ?? {}) as Record<string, unknown>)) {
    if (typeof val !== 'string')
      throw decodeFail(
        `json: cannot unmarshal ${jsonType(val)} into Go struct field ${field} of type string`,
      )
    out[k] = val
  }
  return out
}

function parseCheck(
  raw: unknown,
  field: string,
):
  | (Omit<AgentCheckDefinition, 'CheckID' | 'Name' | 'ServiceID'> & {
      CheckID: string
      Name: string
    })
  | undefined {
  expect(raw, 'object', field, 'structs.CheckType')
  if (raw === undefined || raw === null) return undefined
  const c = canonicalKeys(raw as Record<string, unknown>, CHECK_FIELDS)
  // CheckType.Empty(): a check object with nothing set is ignored.
  if (
    Object.values(c).every(
      (v) => v === undefined || v === null || v === '' || v === false || v === 0,
    )
  )
    return undefined
  for (const f of [
    'CheckID',
    'ID',
    'Name',
    'Notes',
    'Status',
    'HTTP',
    'Method',
    'Body',
    'TCP',
    'TLSServerName',
  ] as const)
    expect(c[f], 'string', `${field}.${f}`, 'string')
  expect(c.TLSSkipVerify, 'boolean', `${field}.TLSSkipVerify`, 'bool')
  const ttlMs = durationMs(c.TTL)
  const intervalMs = durationMs(c.Interval)
  const timeoutMs = durationMs(c.Timeout)
  const deregMs = durationMs(c.DeregisterCriticalServiceAfter)
  const http = typeof c.HTTP === 'string' ? c.HTTP : ''
  const tcp = typeof c.TCP === 'string' ? c.TCP : ''
  const otherInterval = ['UDP', 'GRPC', 'H2PING', 'Args', 'ScriptArgs'].some(
    (f) => c[f] !== undefined && c[f] !== '' && c[f] !== null,
  )
  const alias =
    (typeof c.AliasService === 'string' && c.AliasService !== '') ||
    (typeof c.AliasNode === 'string' && c.AliasNode !== '')
  const intervalCheck = http !== '' || tcp !== '' || otherInterval
  // CheckType.Validate (check_type.go), surfaced as 400 "Invalid check: ..."
  if ((intervalMs ?? 0) > 0 && (ttlMs ?? 0) > 0)
    throw new HttpError(400, 'Invalid check: Interval and TTL cannot both be specified')
  if (intervalCheck && (intervalMs ?? 0) <= 0)
    throw new HttpError(
      400,
      'Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks',
    )
  if (!intervalCheck && !alias && (ttlMs ?? 0) <= 0)
    throw new HttpError(400, 'Invalid check: TTL must be > 0 for TTL checks')
  const header: Record<string, string[]> = {}
  if (c.Header !== undefined && c.Header !== null) {
    expect(c.Header, 'object', `${field}.Header`, 'map[string][]string')
    for (const [k, v] of Object.entries(c.Header as Record<string, unknown>)) {
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
        throw decodeFail(
          `json: cannot unmarshal ${jsonType(v)} into Go struct field ${field}.Header of type []string`,
        )
      header[k] = v as string[]
    }
  }
  const kind: AgentCheckDefinition['kind'] =
    http !== '' ? 'http' : tcp !== '' ? 'tcp' : (ttlMs ?? 0) > 0 ? 'ttl' : 'none'
  const present = (f: string): boolean => c[f] !== undefined && c[f] !== null && c[f] !== ''
  // CheckType.Type()
  const type =
    kind !== 'none'
      ? kind
      : present('GRPC')
        ? 'grpc'
        : present('UDP')
          ? 'udp'
          : present('H2PING')
            ? 'h2ping'
            : present('DockerContainerID')
              ? 'docker'
              : present('Args') || present('ScriptArgs')
                ? 'script'
                : alias
                  ? 'alias'
                  : ''
  const def: Omit<AgentCheckDefinition, 'CheckID' | 'Name' | 'ServiceID'> & {
    CheckID: string
    Name: string
  } = {
    CheckID: typeof c.CheckID === 'string' ? c.CheckID : typeof c.ID === 'string' ? c.ID : '',
    Name: typeof c.Name === 'string' ? c.Name : '',
    Notes: typeof c.Notes === 'string' ? c.Notes : '',
    kind,
    type,
  }
  if (typeof c.Status === 'string' && c.Status !== '') def.Status = c.Status as CheckStatus
  if (kind === 'ttl' && ttlMs !== undefined) def.ttlMs = ttlMs
  if (intervalMs !== undefined && kind !== 'ttl') def.intervalMs = intervalMs
  if (timeoutMs !== undefined && timeoutMs > 0) def.timeoutMs = timeoutMs
  if (http !== '') def.http = http
  if (tcp !== '') def.tcp = tcp
  if (typeof c.Method === 'string' && c.Method !== '') def.method = c.Method
  if (typeof c.Body === 'string') def.body = c.Body
  if (Object.keys(header).length > 0) def.header = header
  if (c.TLSSkipVerify === true) def.tlsSkipVerify = true
  if (typeof c.TLSServerName === 'string' && c.TLSServerName !== '')
    def.tlsServerName = c.TLSServerName
  if (deregMs !== undefined && deregMs > 0) def.deregisterCriticalServiceAfterMs = deregMs
  for (const f of [
    'SuccessBeforePassing',
    'FailuresBeforeWarning',
    'FailuresBeforeCritical',
  ] as const) {
    expect(c[f], 'number', `${field}.${f}`, 'int')
  }
  if (typeof c.SuccessBeforePassing === 'number' && c.SuccessBeforePassing > 0)
    def.successBeforePassing = c.SuccessBeforePassing
  if (typeof c.FailuresBeforeCritical === 'number' && c.FailuresBeforeCritical > 0)
    def.failuresBeforeCritical = c.FailuresBeforeCritical
  if (typeof c.FailuresBeforeWarning === 'number' && c.FailuresBeforeWarning > 0)
    def.failuresBeforeWarning = c.FailuresBeforeWarning
  return def
}

function isIpLiteral(a: string): 4 | 6 | 0 {
  if (/^(\d{1,3})(\.\d{1,3}){3}$/.test(a)) return 4
  if (a.includes(':') && /^[0-9a-fA-F:.]+$/.test(a)) return 6
  return 0
}

/** Decodes and validates a `PUT /v1/agent/service/register` body (agent_endpoint.go `AgentRegisterService`). */
export function parseRegistration(
  body: string,
  _nodeName: string,
): {
  service: Omit<ServiceRecord, 'CreateIndex' | 'ModifyIndex'> & { node: string }
  checks: AgentCheckDefinition[]
} {
  const raw = decodeJson(body)
  if (raw === undefined) throw decodeFail(goJsonError(body))
  if (!isObject(raw))
    throw decodeFail(
      `json: cannot unmarshal ${jsonType(raw)} into Go value of type structs.ServiceDefinition`,
    )
  const s = canonicalKeys(raw, SERVICE_FIELDS)
  expect(s.Name, 'string', 'ServiceDefinition.Name', 'string')
  expect(s.ID, 'string', 'ServiceDefinition.ID', 'string')
  expect(s.Address, 'string', 'ServiceDefinition.Address', 'string')
  expect(s.Kind, 'string', 'ServiceDefinition.Kind', 'structs.ServiceKind')
  expect(s.Port, 'number', 'ServiceDefinition.Port', 'int')
  if (typeof s.Port === 'number' && !Number.isInteger(s.Port))
    throw decodeFail(
      `json: cannot unmarshal number ${s.Port} into Go struct field ServiceDefinition.Port of type int`,
    )
  expect(s.Tags, 'array', 'ServiceDefinition.Tags', '[]string')
  if (Array.isArray(s.Tags) && s.Tags.some((t) => typeof t !== 'string'))
    throw decodeFail(
      'json: cannot unmarshal number into Go struct field ServiceDefinition.Tags of type string',
    )
  expect(s.EnableTagOverride, 'boolean', 'ServiceDefinition.EnableTagOverride', 'bool')
  expect(s.Checks, 'array', 'ServiceDefinition.Checks', 'structs.CheckTypes')
  const meta = stringMap(s.Meta, 'ServiceDefinition.Meta')
  expect(s.Weights, 'object', 'ServiceDefinition.Weights', 'structs.Weights')
  expect(
    s.TaggedAddresses,
    'object',
    'ServiceDefinition.TaggedAddresses',
    'map[string]structs.ServiceAddress',
  )

  // Duration decoding happens during JSON decode, before any validation.
  const rawChecks: { raw: unknown; field: string }[] = []
  if (s.Check !== undefined && s.Check !== null)
    rawChecks.push({ raw: s.Check, field: 'ServiceDefinition.Check' })
  if (Array.isArray(s.Checks))
    s.Checks.forEach((c, i) => rawChecks.push({ raw: c, field: `ServiceDefinition.Checks[${i}]` }))
  for (const { raw: rc } of rawChecks) {
    if (isObject(rc)) {
      const c = canonicalKeys(rc, CHECK_FIELDS)
      for (const f of ['TTL', 'Interval', 'Timeout', 'DeregisterCriticalServiceAfter'])
        durationMs(c[f])
    }
  }

  const name = typeof s.Name === 'string' ? s.Name : ''
  if (name === '') throw new HttpError(400, 'Missing service name')
  const address = typeof s.Address === 'string' ? s.Address : ''
  // ipaddr.IsAny
  if (['0.0.0.0', '::', '[::]'].includes(address))
    throw new HttpError(400, 'Invalid service address')
  let weights = { Passing: 1, Warning: 1 }
  if (isObject(s.Weights)) {
    const w = canonicalKeys(s.Weights, ['Passing', 'Warning'])
    const passing = typeof w.Passing === 'number' ? w.Passing : 0
    const warning = typeof w.Warning === 'number' ? w.Warning : 0
    // structs.ValidateWeights
    if (passing < 1) throw new HttpError(400, 'Invalid Weights: Passing must be greater than 0')
    if (warning < 0)
      throw new HttpError(400, 'Invalid Weights: Warning must be greater or equal than 0')
    weights = { Passing: passing, Warning: warning }
  }
  for (const k of Object.keys(meta)) {
    // structs.ValidateServiceMetadata: the consul- prefix is reserved.
    if (k.startsWith('consul-'))
      throw new HttpError(
        400,
        "Invalid Service Meta: Key prefix 'consul-' is reserved for internal use",
      )
    if (!/^[a-zA-Z0-9_-]+$/.test(k))
      throw new HttpError(
        400,
        `Invalid Service Meta: Key contains invalid characters: ${JSON.stringify(k)}`,
      )
  }
  const port = typeof s.Port === 'number' ? s.Port : 0
  const id = typeof s.ID === 'string' && s.ID !== '' ? s.ID : name
  const tagged: Record<string, ServiceAddress> = {}
  if (isObject(s.TaggedAddresses)) {
    for (const [k, v] of Object.entries(s.TaggedAddresses)) {
      if (!isObject(v)) continue
      const a = canonicalKeys(v, ['Address', 'Port'])
      tagged[k] = {
        Address: typeof a.Address === 'string' ? a.Address : '',
        Port: typeof a.Port === 'number' ? a.Port : 0,
      }
    }
  }
  // agent.go addServiceInternal: an IP-literal Address gets lan/wan tagged addresses of its family.
  const family = isIpLiteral(address)
  if (family !== 0) {
    const suffix = family === 4 ? 'ipv4' : 'ipv6'
    tagged[`lan_${suffix}`] ??= { Address: address, Port: port }
    tagged[`wan_${suffix}`] ??= { Address: address, Port: port }
  }
  const parsed = rawChecks
    .map(({ raw: rc, field }) => parseCheck(rc, field))
    .filter((c): c is NonNullable<typeof c> => c !== undefined)
  const checks: AgentCheckDefinition[] = parsed.map((c, i) => ({
    ...c,
    // addServiceInternal: service:<id>, or service:<id>:<n> (n from 1) when there are several.
    CheckID:
      c.CheckID !== '' ? c.CheckID : parsed.length > 1 ? `service:${id}:${i + 1}` : `service:${id}`,
    Name: c.Name !== '' ? c.Name : `Service '${name}' check`,
    ServiceID: id,
  }))
  const service = {
    node: _nodeName,
    Kind: typeof s.Kind === 'string' ? s.Kind : '',
    ID: id,
    Service: name,
    Tags: Array.isArray(s.Tags) ? [...(s.Tags as string[])] : [],
    Address: address,
    TaggedAddresses: tagged,
    Meta: meta,
    Port: port,
    Weights: weights,
    EnableTagOverride: s.EnableTagOverride === true,
  }
  return { service, checks }
}

// ---- helpers -----------------------------------------------------------------------------

/**
 * health_ep.go `filterNonPassing`, step for step: a failing entry is replaced by the last one, so
 * the order of what is left is not the catalog order (clients must not depend on it).
 */
function filterNonPassing<T extends { Checks: { Status: string }[] }>(entries: T[]): T[] {
  const out = [...entries]
  let n = out.length
  for (let i = 0; i < n; i++) {
    const entry = out[i] as T
    if (entry.Checks.some((c) => c.Status !== 'passing')) {
      out[i] = out[n - 1] as T
      n--
      i--
    }
  }
  return out.slice(0, n)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function decodeJson(body: string): unknown {
  try {
    return JSON.parse(body) as unknown
  } catch {
    return undefined
  }
}

/** encoding/json's error for a body that does not parse (close to Go's text for the common cases). */
function goJsonError(body: string): string {
  const trimmed = body.trim()
  if (trimmed === '') return 'EOF'
  const first = trimmed.charAt(0)
  if (!/[{["\-0-9tfn]/.test(first))
    return `invalid character '${first}' looking for beginning of value`
  return 'unexpected EOF'
}

function normalizeIndex(i: number): number {
  return i < 1 ? 1 : i
}

function accessorOf(token: string): string {
  const h = createHash('sha256').update(token).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`
}

/** Go `strconv.ParseBool`, with a present-but-empty param meaning true (health_ep.go `getBoolQueryParam`). */
function parseBoolParam(q: URLSearchParams, name: string): boolean | 'invalid' {
  if (!q.has(name)) return false
  const v = q.get(name) ?? ''
  if (v === '') return true
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false
  return 'invalid'
}

function parseNodeMeta(q: URLSearchParams): [string, string][] {
  return q.getAll('node-meta').map((pair) => {
    const i = pair.indexOf(':')
    return i < 0 ? [pair, ''] : [pair.slice(0, i), pair.slice(i + 1)]
  })
}

function matchesNodeMeta(meta: Record<string, string>, filters: [string, string][]): boolean {
  return filters.every(([k, v]) => meta[k] === v)
}

/** Tag matching is case-insensitive and every tag must match (state/catalog.go `serviceTagsFilter`). */
function hasTags(s: ServiceRecord, tags: string[]): boolean {
  return tags.every((t) => s.Tags.some((x) => x.toLowerCase() === t.toLowerCase()))
}

function readBody(req: ApiRequest): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
    req.on('error', reject)
  })
}

function sendJson(res: ApiResponse, body: unknown, q: URLSearchParams): void {
  // ?pretty: json.MarshalIndent with four spaces and a trailing newline (http.go marshalJSON).
  const text = q.has('pretty') ? `${JSON.stringify(body, null, 4)}\n` : JSON.stringify(body)
  res.statusCode = 200
  res.setHeader('Content-Type', JSON_TYPE)
  res.end(text)
}

function sendText(res: ApiResponse, status: number, text: string): void {
  res.statusCode = status
  res.setHeader('Content-Type', TEXT_TYPE)
  res.end(text)
}

/** A successful write: 200 with an empty body (the handler returns nil, `wrap` writes nothing). */
function sendEmpty(res: ApiResponse): void {
  res.statusCode = 200
  res.end()
}
