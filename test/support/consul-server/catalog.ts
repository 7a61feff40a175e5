/**
 * The catalog: nodes, services and checks with Consul's Raft-index bookkeeping.
 *
 * Index semantics follow Consul's state store (hashicorp/consul agent/consul/state/catalog.go):
 * - every write that changes something takes the next Raft index; a write that changes nothing
 *   (`IsSame`) takes none;
 * - each service name has its own index entry `service.<name>`, bumped when an instance of it, one
 *   of its checks, a node-level check of a node it runs on (`updateAllServiceIndexesOfNode`) or that
 *   node itself changes. Health and catalog queries for a service report that index
 *   (`maxIndexForService`), so unrelated churn does not wake them (per-service indexes since 1.0.7,
 *   hashicorp/consul#3890);
 * - when the last instance of a service goes away its entry is dropped and
 *   `service_last_extinction` is set; a query for a missing service reports that index (or, if
 *   nothing ever went extinct, the max of the nodes/services/checks tables).
 */

export type CheckStatus = 'passing' | 'warning' | 'critical'

export interface NodeRecord {
  ID: string
  Node: string
  Address: string
  Datacenter: string
  TaggedAddresses: Record<string, string>
  Meta: Record<string, string>
  CreateIndex: number
  ModifyIndex: number
}

export interface ServiceAddress {
  Address: string
  Port: number
}

export interface ServiceRecord {
  /** Node name the instance lives on (not part of the JSON shape). */
  node: string
  Kind: string
  ID: string
  Service: string
  Tags: string[]
  Address: string
  TaggedAddresses: Record<string, ServiceAddress>
  Meta: Record<string, string>
  Port: number
  Weights: { Passing: number; Warning: number }
  EnableTagOverride: boolean
  CreateIndex: number
  ModifyIndex: number
}

export interface CheckRecord {
  Node: string
  CheckID: string
  Name: string
  Status: CheckStatus
  Notes: string
  Output: string
  ServiceID: string
  ServiceName: string
  ServiceTags: string[]
  Type: string
  Interval: string
  Timeout: string
  ExposedPort: number
  CreateIndex: number
  ModifyIndex: number
}

type NodeInput = Omit<NodeRecord, 'CreateIndex' | 'ModifyIndex'>
type ServiceInput = Omit<ServiceRecord, 'CreateIndex' | 'ModifyIndex'>
type CheckInput = Omit<CheckRecord, 'CreateIndex' | 'ModifyIndex'>

/** Called after every committed write; `abandon` is true for a snapshot restore (index regression). */
export type CommitListener = (abandon: boolean) => void

const key = (node: string, id: string): string => `${node}\u0000${id}`

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** An upsert that changes nothing but the raft indexes is a no-op (no index bump, as in Consul). */
function sameButIndexes(existing: object | undefined, input: object): boolean {
  return (
    existing !== undefined &&
    sameJson(
      { ...existing, CreateIndex: 0, ModifyIndex: 0 },
      { ...input, CreateIndex: 0, ModifyIndex: 0 },
    )
  )
}

export class Catalog {
  #index = 0
  readonly #tables = new Map<string, number>()
  readonly #nodes = new Map<string, NodeRecord>()
  readonly #services = new Map<string, ServiceRecord>()
  readonly #checks = new Map<string, CheckRecord>()
  readonly #listeners = new Set<CommitListener>()
  /** Secondary indexes (memdb's `service` and `node` indexes): name → keys, node → check keys. */
  readonly #byName = new Map<string, Set<string>>()
  readonly #checksByNode = new Map<string, Set<string>>()
  /** (node, ServiceID) → check keys, like memdb's `node_service` index; '' holds node-level checks. */
  readonly #checksByService = new Map<string, Set<string>>()
  #pending: number | undefined

  /** The last Raft index used. */
  get index(): number {
    return this.#index
  }

  subscribe(listener: CommitListener): () => void {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  /** Runs several writes as one Raft entry: one index, one wake-up (like one catalog register RPC). */
  transaction(fn: () => void): void {
    this.#txn(() => {
      fn()
    })
  }

  /** Runs `fn` as one transaction: at most one index is consumed, listeners run once. */
  #txn(fn: (idx: number) => void): void {
    const outer = this.#pending === undefined
    if (outer) this.#pending = this.#index + 1
    const idx = this.#pending as number
    const before = this.#index
    try {
      fn(idx)
    } finally {
      if (outer) {
        this.#pending = undefined
        if (this.#index !== before) this.#notify(false)
      }
    }
  }

  #bump(idx: number, ...tables: string[]): void {
    this.#index = idx
    for (const t of tables) this.#tables.set(t, idx)
  }

  #notify(abandon: boolean): void {
    for (const l of [...this.#listeners]) l(abandon)
  }

  nodes(): NodeRecord[] {
    return [...this.#nodes.values()].sort((a, b) => cmp(a.Node, b.Node))
  }

  node(name: string): NodeRecord | undefined {
    return this.#nodes.get(name)
  }

  /** Instances of `name`, ordered by node then ID as Consul's memdb index iterates them. */
  serviceInstances(name: string): ServiceRecord[] {
    const keys = this.#byName.get(name)
    if (keys === undefined) return []
    return [...keys]
      .map((k) => this.#services.get(k) as ServiceRecord)
      .sort((a, b) => cmp(a.node, b.node) || cmp(a.ID, b.ID))
  }

  #putService(k: string, rec: ServiceRecord): void {
    const prev = this.#services.get(k)
    if (prev !== undefined) this.#byName.get(prev.Service)?.delete(k)
    this.#services.set(k, rec)
    let set = this.#byName.get(rec.Service)
    if (set === undefined) this.#byName.set(rec.Service, (set = new Set()))
    set.add(k)
  }

  #dropService(k: string): void {
    const prev = this.#services.get(k)
    if (prev === undefined) return
    this.#services.delete(k)
    const set = this.#byName.get(prev.Service)
    set?.delete(k)
    if (set?.size === 0) this.#byName.delete(prev.Service)
  }

  #putCheck(k: string, rec: CheckRecord): void {
    this.#checks.set(k, rec)
    let set = this.#checksByNode.get(rec.Node)
    if (set === undefined) this.#checksByNode.set(rec.Node, (set = new Set()))
    set.add(k)
    const sk = key(rec.Node, rec.ServiceID)
    let byService = this.#checksByService.get(sk)
    if (byService === undefined) this.#checksByService.set(sk, (byService = new Set()))
    byService.add(k)
  }

  #dropCheck(k: string): void {
    const prev = this.#checks.get(k)
    if (prev === undefined) return
    this.#checks.delete(k)
    const set = this.#checksByNode.get(prev.Node)
    set?.delete(k)
    if (set?.size === 0) this.#checksByNode.delete(prev.Node)
    const sk = key(prev.Node, prev.ServiceID)
    const byService = this.#checksByService.get(sk)
    byService?.delete(k)
    if (byService?.size === 0) this.#checksByService.delete(sk)
  }

  #nodeChecks(node: string): CheckRecord[] {
    return [...(this.#checksByNode.get(node) ?? [])].map((k) => this.#checks.get(k) as CheckRecord)
  }

  allServices(): ServiceRecord[] {
    return [...this.#services.values()].sort((a, b) => cmp(a.node, b.node) || cmp(a.ID, b.ID))
  }

  service(node: string, id: string): ServiceRecord | undefined {
    return this.#services.get(key(node, id))
  }

  /** Node-level checks plus the checks of `serviceId`, ordered by check ID. */
  checksFor(node: string, serviceId: string): CheckRecord[] {
    // Looked up by index, as memdb does: a scan of every check on the node per returned entry
    // made large single-node catalogs quadratic (10,000 instances: ~80 % of the server's CPU).
    const keys = [
      ...(this.#checksByService.get(key(node, '')) ?? []),
      ...(serviceId === '' ? [] : (this.#checksByService.get(key(node, serviceId)) ?? [])),
    ]
    return keys
      .map((k) => this.#checks.get(k) as CheckRecord)
      .sort((a, b) => cmp(a.CheckID, b.CheckID))
  }

  check(node: string, checkId: string): CheckRecord | undefined {
    return this.#checks.get(key(node, checkId))
  }

  /** Index reported by health/catalog queries for `name` (`maxIndexForService`). */
  serviceIndex(name: string): number {
    const exists = this.#byName.has(name)
    if (!exists) {
      const extinct = this.#tables.get('service_last_extinction')
      if (extinct !== undefined) return extinct
    }
    const own = this.#tables.get(`service.${name}`)
    if (own !== undefined) return own
    return this.tablesIndex('nodes', 'services', 'checks')
  }

  tablesIndex(...tables: string[]): number {
    let max = 0
    for (const t of tables) max = Math.max(max, this.#tables.get(t) ?? 0)
    return max
  }

  ensureNode(input: NodeInput): void {
    this.#txn((idx) => {
      const existing = this.#nodes.get(input.Node)
      if (sameButIndexes(existing, input)) return
      this.#nodes.set(input.Node, {
        ...input,
        CreateIndex: existing?.CreateIndex ?? idx,
        ModifyIndex: idx,
      })
      this.#bump(idx, 'nodes')
      this.#bumpServicesOfNode(idx, input.Node)
    })
  }

  deleteNode(name: string): void {
    this.#txn((idx) => {
      if (!this.#nodes.has(name)) return
      for (const s of [...this.#services.values()])
        if (s.node === name) this.deleteService(name, s.ID)
      for (const c of this.#nodeChecks(name)) this.deleteCheck(name, c.CheckID)
      this.#nodes.delete(name)
      this.#bump(idx, 'nodes')
    })
  }

  ensureService(input: ServiceInput): void {
    this.#txn((idx) => {
      const k = key(input.node, input.ID)
      const existing = this.#services.get(k)
      if (sameButIndexes(existing, input)) return
      this.#putService(k, { ...input, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: idx })
      this.#bump(idx, 'services', `service.${input.Service}`)
      if (existing !== undefined && existing.Service !== input.Service)
        this.#afterServiceRemoved(idx, existing.Service)
      // Service checks carry the service's name and tags: keep them in step.
      for (const c of this.#nodeChecks(input.node)) {
        if (
          c.ServiceID === input.ID &&
          (c.ServiceName !== input.Service || !sameJson(c.ServiceTags, input.Tags))
        ) {
          c.ServiceName = input.Service
          c.ServiceTags = [...input.Tags]
          c.ModifyIndex = idx
          this.#bump(idx, 'checks')
        }
      }
    })
  }

  deleteService(node: string, id: string): boolean {
    let found = false
    this.#txn((idx) => {
      const k = key(node, id)
      const existing = this.#services.get(k)
      if (existing === undefined) return
      found = true
      this.#dropService(k)
      for (const c of this.#nodeChecks(node)) {
        if (c.ServiceID === id) {
          this.#dropCheck(key(node, c.CheckID))
          this.#bump(idx, 'checks')
        }
      }
      this.#bump(idx, 'services', `service.${existing.Service}`)
      this.#afterServiceRemoved(idx, existing.Service)
    })
    return found
  }

  #afterServiceRemoved(idx: number, name: string): void {
    if (!this.#byName.has(name)) {
      this.#tables.delete(`service.${name}`)
      this.#bump(idx, 'service_last_extinction')
    }
  }

  ensureCheck(input: CheckInput): void {
    this.#txn((idx) => {
      const k = key(input.Node, input.CheckID)
      const existing = this.#checks.get(k)
      if (sameButIndexes(existing, input)) return
      this.#putCheck(k, { ...input, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: idx })
      this.#bump(idx, 'checks')
      this.#bumpForCheck(idx, input.Node, input.ServiceID)
    })
  }

  deleteCheck(node: string, checkId: string): void {
    this.#txn((idx) => {
      const k = key(node, checkId)
      const existing = this.#checks.get(k)
      if (existing === undefined) return
      this.#dropCheck(k)
      this.#bump(idx, 'checks')
      this.#bumpForCheck(idx, node, existing.ServiceID)
    })
  }

  #bumpForCheck(idx: number, node: string, serviceId: string): void {
    if (serviceId === '') {
      this.#bumpServicesOfNode(idx, node)
      return
    }
    const svc = this.#services.get(key(node, serviceId))
    if (svc !== undefined) this.#bump(idx, `service.${svc.Service}`)
  }

  #bumpServicesOfNode(idx: number, node: string): void {
    for (const s of this.#services.values())
      if (s.node === node) this.#bump(idx, `service.${s.Service}`)
  }

  /**
   * Models a Raft snapshot restore with older indexes (blocking.mdx lists it as a cause of index
   * regression): every index, table entry and Create/ModifyIndex above `to` is lowered to `to`,
   * and blocked queries are woken through the abandon channel, as `bq.go` does on restore.
   */
  regressIndex(to: number): void {
    const target = Math.max(1, Math.floor(to))
    this.#index = Math.min(this.#index, target)
    for (const [t, v] of this.#tables) this.#tables.set(t, Math.min(v, target))
    for (const rec of [
      ...this.#nodes.values(),
      ...this.#services.values(),
      ...this.#checks.values(),
    ]) {
      rec.CreateIndex = Math.min(rec.CreateIndex, target)
      rec.ModifyIndex = Math.min(rec.ModifyIndex, target)
    }
    this.#notify(true)
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
