/**
 * The local agent: services and checks registered through `/v1/agent/*`, the check runners
 * (TTL, HTTP, TCP) and the critical-service reaper. Every change is written to the catalog at once
 * (a real agent syncs through anti-entropy; here the sync is immediate and lossless).
 *
 * Sources: hashicorp/consul agent/agent.go (`addServiceInternal`, `updateTTLCheck`, `reapServices`),
 * agent/checks/check.go (`CheckTTL`, `CheckHTTP`, `CheckTCP`), website api-docs/agent/check.mdx.
 */
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type { Clock, TimerHandle } from '../../../src/core/clock.js'
import type { Catalog, CheckStatus, ServiceRecord } from './catalog.js'
import { formatGoDuration } from './go-duration.js'

type ServiceInput = Omit<ServiceRecord, 'CreateIndex' | 'ModifyIndex'>

/** A check definition after validation and defaulting (durations in ms). */
export interface AgentCheckDefinition {
  CheckID: string
  Name: string
  Notes: string
  ServiceID: string
  Status?: CheckStatus
  /** What the agent runs: TTL timer, HTTP probe, TCP probe, or nothing (other types, maintenance). */
  kind: 'ttl' | 'http' | 'tcp' | 'none'
  /** `HealthCheck.Type` as `CheckType.Type()` names it ("ttl", "http", "tcp", "grpc", "script", "maintenance"...). */
  type: string
  ttlMs?: number
  intervalMs?: number
  timeoutMs?: number
  http?: string
  method?: string
  header?: Record<string, string[]>
  body?: string
  tlsSkipVerify?: boolean
  tlsServerName?: string
  tcp?: string
  deregisterCriticalServiceAfterMs?: number
  /** StatusHandler thresholds (HTTP/TCP checks): consecutive results needed before a change. */
  successBeforePassing?: number
  failuresBeforeWarning?: number
  failuresBeforeCritical?: number
}

export interface AgentOptions {
  readonly nodeName: string
  readonly clock: Clock
  readonly random: () => number
  /** Consul's `checks.MinInterval` (1 s): shorter HTTP/TCP intervals are raised to it. */
  readonly minCheckIntervalMs: number
  /** Consul's `check_reap_interval` (30 s). */
  readonly checkReapIntervalMs: number
  /** Consul's `check_deregister_interval_min` (1 m). */
  readonly checkDeregisterIntervalMinMs: number
  /**
   * Consul's `check_update_interval` (5 m): a change of output alone is written to the catalog
   * only after a deferral of interval/2 + random(interval); status changes are written at once.
   * 0 writes every change at once.
   */
  readonly checkUpdateIntervalMs: number
}

interface RunningCheck {
  def: AgentCheckDefinition
  status: CheckStatus
  output: string
  /** Clock time at which the check last became critical. */
  criticalSinceMs: number | undefined
  timer: TimerHandle | undefined
  inflight: AbortController | undefined
  /** Pending output-only write-back to the catalog (local/state.go `DeferCheck`). */
  deferred: TimerHandle | undefined
  successCount: number
  failureCount: number
}

/** hashicorp/consul api/health.go: maintenance check IDs. */
const SERVICE_MAINT_PREFIX = '_service_maintenance:'
const NODE_MAINT_ID = '_node_maintenance'

/** Maximum output kept from an HTTP check body (Consul's default `check_output_max_size`, 4 KiB). */
const OUTPUT_MAX = 4096

/** Abort reason of a probe that ran out of time (as opposed to a probe stopped by re-registration). */
const PROBE_TIMEOUT = new Error('check timeout')

export class Agent {
  readonly #catalog: Catalog
  readonly #opts: AgentOptions
  readonly #services = new Map<string, ServiceInput>()
  readonly #checks = new Map<string, RunningCheck>()
  #reaper: TimerHandle | undefined
  #closed = false

  constructor(catalog: Catalog, options: AgentOptions) {
    this.#catalog = catalog
    this.#opts = options
    this.#scheduleReap()
  }

  get nodeName(): string {
    return this.#opts.nodeName
  }

  services(): ServiceInput[] {
    return [...this.#services.values()].sort((a, b) => (a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0))
  }

  service(id: string): ServiceInput | undefined {
    return this.#services.get(id)
  }

  checks(): { def: AgentCheckDefinition; status: CheckStatus; output: string }[] {
    return [...this.#checks.values()].map((c) => ({
      def: c.def,
      status: c.status,
      output: c.output,
    }))
  }

  check(
    id: string,
  ): { def: AgentCheckDefinition; status: CheckStatus; output: string } | undefined {
    const c = this.#checks.get(id)
    return c === undefined ? undefined : { def: c.def, status: c.status, output: c.output }
  }

  /** `addServiceInternal`: upsert the service, carry over check state, optionally drop missing checks. */
  register(
    service: ServiceInput,
    checks: AgentCheckDefinition[],
    replaceExistingChecks: boolean,
  ): void {
    // Anti-entropy syncs a service with its checks in one catalog register: one index.
    this.#catalog.transaction(() => {
      this.#register(service, checks, replaceExistingChecks)
    })
  }

  #register(
    service: ServiceInput,
    checks: AgentCheckDefinition[],
    replaceExistingChecks: boolean,
  ): void {
    const snapshot = new Map(
      [...this.#checks].map(([id, c]) => [id, { status: c.status, output: c.output }]),
    )
    this.#services.set(service.ID, service)
    this.#catalog.ensureService(service)
    const keep = new Set(checks.map((c) => c.CheckID))
    if (replaceExistingChecks) {
      for (const [id, c] of [...this.#checks]) {
        if (c.def.ServiceID === service.ID && !keep.has(id) && !id.startsWith(SERVICE_MAINT_PREFIX))
          this.#removeCheck(id)
      }
    }
    for (const def of checks) this.#addCheck(def, snapshot.get(def.CheckID))
  }

  #addCheck(
    def: AgentCheckDefinition,
    prev: { status: CheckStatus; output: string } | undefined,
  ): void {
    this.#stopCheck(def.CheckID)
    const running: RunningCheck = {
      def,
      // Consul restores status and output from the pre-registration snapshot when the check existed.
      status: prev?.status ?? def.Status ?? 'critical',
      output: prev?.output ?? '',
      criticalSinceMs: undefined,
      timer: undefined,
      inflight: undefined,
      deferred: undefined,
      successCount: 0,
      failureCount: 0,
    }
    if (running.status === 'critical') running.criticalSinceMs = this.#opts.clock.now()
    this.#checks.set(def.CheckID, running)
    this.#syncCheck(running)
    this.#startCheck(running)
  }

  /**
   * `EnableServiceMaintenance` / `DisableServiceMaintenance`: a critical `_service_maintenance:<id>`
   * check. False when the agent does not know the service.
   */
  setServiceMaintenance(serviceId: string, enable: boolean, reason: string): boolean {
    const svc = this.#services.get(serviceId)
    if (svc === undefined) return false
    const id = `${SERVICE_MAINT_PREFIX}${serviceId}`
    if (!enable) {
      if (this.#checks.has(id)) this.#removeCheck(id)
      return true
    }
    if (this.#checks.has(id)) return true
    this.#addCheck(
      {
        CheckID: id,
        Name: 'Service Maintenance Mode',
        Notes:
          reason === ''
            ? 'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.'
            : reason,
        ServiceID: serviceId,
        Status: 'critical',
        kind: 'none',
        type: 'maintenance',
      },
      undefined,
    )
    return true
  }

  /** `EnableNodeMaintenance` / `DisableNodeMaintenance`: a critical `_node_maintenance` node check. */
  setNodeMaintenance(enable: boolean, reason: string): void {
    if (!enable) {
      if (this.#checks.has(NODE_MAINT_ID)) this.#removeCheck(NODE_MAINT_ID)
      return
    }
    if (this.#checks.has(NODE_MAINT_ID)) return
    this.#addCheck(
      {
        CheckID: NODE_MAINT_ID,
        Name: 'Node Maintenance Mode',
        Notes:
          reason === ''
            ? 'Maintenance mode is enabled for this node, but no reason was provided. This is a default message.'
            : reason,
        ServiceID: '',
        Status: 'critical',
        kind: 'none',
        type: 'maintenance',
      },
      undefined,
    )
  }

  /** Removes a service and its checks; false when the agent does not know it. */
  deregister(id: string): boolean {
    if (!this.#services.has(id)) return false
    this.#catalog.transaction(() => {
      this.#deregister(id)
    })
    return true
  }

  #deregister(id: string): void {
    for (const [cid, c] of [...this.#checks]) if (c.def.ServiceID === id) this.#removeCheck(cid)
    this.#services.delete(id)
    this.#catalog.deleteService(this.#opts.nodeName, id)
  }

  /** `updateTTLCheck`: 'unknown' when no such check, 'not-ttl' when it is not a TTL check. */
  updateTTL(checkId: string, status: CheckStatus, output: string): 'ok' | 'unknown' | 'not-ttl' {
    const c = this.#checks.get(checkId)
    if (c === undefined) return 'unknown'
    if (c.def.kind !== 'ttl') return 'not-ttl'
    this.#setStatus(c, status, output)
    this.#armTtl(c)
    return 'ok'
  }

  /** Forgets every service and check, as an agent without a data dir does on restart. */
  restart(persist = false): void {
    if (persist) {
      // agent.go loadServices/loadChecks: services and checks come back from the data dir, TTL
      // checks with their persisted status ("so the TTL check can come up in a good state after
      // an agent restart"); every runner starts afresh, so TTL clocks restart too.
      for (const c of [...this.#checks.values()])
        this.#addCheck(c.def, { status: c.status, output: c.output })
      return
    }
    this.#catalog.transaction(() => {
      for (const id of [...this.#services.keys()]) this.deregister(id)
      for (const id of [...this.#checks.keys()]) this.#removeCheck(id)
    })
  }

  close(): void {
    this.#closed = true
    this.#reaper?.clear()
    for (const id of [...this.#checks.keys()]) this.#stopCheck(id)
  }

  #removeCheck(id: string): void {
    this.#stopCheck(id)
    this.#checks.delete(id)
    this.#catalog.deleteCheck(this.#opts.nodeName, id)
  }

  #stopCheck(id: string): void {
    const c = this.#checks.get(id)
    if (c === undefined) return
    c.timer?.clear()
    c.timer = undefined
    c.inflight?.abort()
    c.inflight = undefined
    c.deferred?.clear()
    c.deferred = undefined
  }

  #syncCheck(c: RunningCheck): void {
    const svc = this.#services.get(c.def.ServiceID)
    const interval = c.def.intervalMs
    this.#catalog.ensureCheck({
      Node: this.#opts.nodeName,
      CheckID: c.def.CheckID,
      Name: c.def.Name,
      Status: c.status,
      Notes: c.def.Notes,
      Output: c.output,
      ServiceID: c.def.ServiceID,
      ServiceName: svc?.Service ?? '',
      ServiceTags: svc === undefined ? [] : [...svc.Tags],
      Type: c.def.type,
      Interval: interval === undefined ? '' : formatGoDuration(interval),
      Timeout: c.def.timeoutMs === undefined ? '' : formatGoDuration(c.def.timeoutMs),
      ExposedPort: 0,
    })
  }

  /** local/state.go `UpdateCheck`: idempotent updates do nothing; output-only changes are deferred. */
  #setStatus(c: RunningCheck, status: CheckStatus, output: string): void {
    if (this.#closed || this.#checks.get(c.def.CheckID) !== c) return
    if (status === 'critical' && c.status !== 'critical') c.criticalSinceMs = this.#opts.clock.now()
    if (status !== 'critical') c.criticalSinceMs = undefined
    if (c.status === status && c.output === output) return
    const interval = this.#opts.checkUpdateIntervalMs
    if (interval > 0 && c.status === status) {
      c.output = output
      c.deferred ??= this.#opts.clock.setTimeout(
        () => {
          c.deferred = undefined
          if (!this.#closed && this.#checks.get(c.def.CheckID) === c) this.#syncCheck(c)
        },
        interval / 2 + this.#opts.random() * interval,
      )
      return
    }
    c.deferred?.clear()
    c.deferred = undefined
    c.status = status
    c.output = output
    this.#syncCheck(c)
  }

  /** checks.StatusHandler: SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical. */
  #probeResult(c: RunningCheck, status: CheckStatus, output: string): void {
    if (status === 'passing' || status === 'warning') {
      c.successCount++
      c.failureCount = 0
      if (c.successCount >= (c.def.successBeforePassing ?? 0)) this.#setStatus(c, status, output)
      return
    }
    c.failureCount++
    c.successCount = 0
    const beforeCritical = c.def.failuresBeforeCritical ?? 0
    if (c.failureCount >= beforeCritical) this.#setStatus(c, status, output)
    else if (c.failureCount >= (c.def.failuresBeforeWarning ?? beforeCritical))
      this.#setStatus(c, 'warning', output)
  }

  #startCheck(c: RunningCheck): void {
    switch (c.def.kind) {
      case 'ttl':
        this.#armTtl(c)
        return
      case 'http':
      case 'tcp': {
        const intervalMs = Math.max(c.def.intervalMs ?? 0, this.#opts.minCheckIntervalMs)
        // CheckHTTP.run: the first probe waits a random stagger within one interval.
        const run = (): void => {
          if (this.#closed || this.#checks.get(c.def.CheckID) !== c) return
          void this.#probe(c).finally(() => {
            if (this.#closed || this.#checks.get(c.def.CheckID) !== c) return
            c.timer = this.#opts.clock.setTimeout(run, intervalMs)
          })
        }
        c.timer = this.#opts.clock.setTimeout(run, this.#opts.random() * intervalMs)
        return
      }
      case 'none':
        return
    }
  }

  #armTtl(c: RunningCheck): void {
    c.timer?.clear()
    const ttl = c.def.ttlMs ?? 0
    c.timer = this.#opts.clock.setTimeout(() => {
      // checks/check.go getExpiredOutput
      const out =
        c.output === ''
          ? 'TTL expired'
          : `TTL expired (last output before timeout follows): ${c.output}`
      this.#setStatus(c, 'critical', out)
    }, ttl)
  }

  async #probe(c: RunningCheck): Promise<void> {
    const ac = new AbortController()
    c.inflight = ac
    // CheckHTTP/CheckTCP.Start: the client timeout defaults to 10 s.
    const timeoutMs = c.def.timeoutMs ?? 10_000
    const timer = this.#opts.clock.setTimeout(() => {
      ac.abort(PROBE_TIMEOUT)
    }, timeoutMs)
    try {
      const result =
        c.def.kind === 'http'
          ? await httpProbe(c.def, ac.signal, timeoutMs)
          : await tcpProbe(c.def, ac.signal, timeoutMs)
      if (!ac.signal.aborted || ac.signal.reason === PROBE_TIMEOUT)
        this.#probeResult(c, result.status, result.output)
    } finally {
      timer.clear()
      if (c.inflight === ac) c.inflight = undefined
    }
  }

  #scheduleReap(): void {
    if (this.#closed) return
    this.#reaper = this.#opts.clock.setTimeout(() => {
      this.reapNow()
      this.#scheduleReap()
    }, this.#opts.checkReapIntervalMs)
  }

  /** One reaper pass (`reapServicesInternal`): remove services critical past their deadline. */
  reapNow(): void {
    const now = this.#opts.clock.now()
    for (const c of [...this.#checks.values()]) {
      const after = c.def.deregisterCriticalServiceAfterMs
      if (after === undefined || c.status !== 'critical' || c.criticalSinceMs === undefined)
        continue
      const timeout = Math.max(after, this.#opts.checkDeregisterIntervalMinMs)
      if (now - c.criticalSinceMs > timeout && this.#services.has(c.def.ServiceID))
        this.deregister(c.def.ServiceID)
    }
  }
}

function httpProbe(
  def: AgentCheckDefinition,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<{ status: CheckStatus; output: string }> {
  const url = def.http ?? ''
  const method = def.method ?? 'GET'
  return new Promise((resolve) => {
    let target: URL
    try {
      target = new URL(url)
    } catch (err) {
      resolve({
        status: 'critical',
        output: `parse ${JSON.stringify(url)}: ${(err as Error).message}`,
      })
      return
    }
    const mod = target.protocol === 'https:' ? https : http
    const headers: Record<string, string | string[]> = {
      'User-Agent': 'Consul Health Check',
      Accept: 'text/plain, text/*, */*',
    }
    for (const [k, v] of Object.entries(def.header ?? {})) headers[k] = v
    const req = mod.request(
      target,
      {
        method,
        headers,
        signal,
        agent: false,
        ...(target.protocol === 'https:' && def.tlsSkipVerify === true
          ? { rejectUnauthorized: false }
          : {}),
        ...(target.protocol === 'https:' && def.tlsServerName !== undefined
          ? { servername: def.tlsServerName }
          : {}),
      },
      (res) => {
        // A circular buffer (circbuf) of OUTPUT_MAX bytes: the *last* 4 KiB of the body are kept.
        let tail = Buffer.alloc(0)
        res.on('data', (b: Buffer) => {
          tail = Buffer.concat([tail, b])
          if (tail.length > OUTPUT_MAX) tail = tail.subarray(tail.length - OUTPUT_MAX)
        })
        res.on('end', () => {
          const body = tail.toString('utf8')
          const code = res.statusCode ?? 0
          const output = `HTTP ${method} ${url}: ${code} ${res.statusMessage ?? ''} Output: ${body}`
          // checks/check.go: 2xx passing, 429 warning, anything else critical.
          const status: CheckStatus =
            code >= 200 && code <= 299 ? 'passing' : code === 429 ? 'warning' : 'critical'
          resolve({ status, output })
        })
        res.on('error', (err) => {
          resolve({ status: 'critical', output: err.message })
        })
      },
    )
    req.on('error', (err) => {
      const reason = signal.aborted
        ? `context deadline exceeded (Client.Timeout exceeded while awaiting headers) after ${timeoutMs}ms`
        : err.message
      resolve({
        status: 'critical',
        output: `${method[0]}${method.slice(1).toLowerCase()} ${JSON.stringify(url)}: ${reason}`,
      })
    })
    if (def.body !== undefined && def.body !== '') req.end(def.body)
    else req.end()
  })
}

function tcpProbe(
  def: AgentCheckDefinition,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<{ status: CheckStatus; output: string }> {
  const addr = def.tcp ?? ''
  const i = addr.lastIndexOf(':')
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '')
  const port = Number(addr.slice(i + 1))
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, signal })
    sock.once('connect', () => {
      sock.destroy()
      resolve({ status: 'passing', output: `TCP connect ${addr}: Success` })
    })
    sock.once('error', (err) => {
      const reason = signal.aborted ? `i/o timeout after ${timeoutMs}ms` : err.message
      resolve({ status: 'critical', output: `dial tcp ${addr}: ${reason}` })
    })
  })
}
