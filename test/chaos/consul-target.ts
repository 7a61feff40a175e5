/**
 * The Consul side of the chaos suite, on the project's Consul test server. Writes come two
 * ways: through the agent's HTTP API on the agent's own node (`node-1`, forgotten when the agent
 * restarts without its data dir) and as catalog registrations on `node-2` (with health flips of
 * their checks). Faults: an index regression (a snapshot restore), 500 and 429 storms, dropped
 * connections, and an agent restart (with or without its data dir) that cuts every connection.
 * The storms and drops hit whoever asks next, this driver's own writes included: those are
 * retried, as a registering client would.
 */
import { Agent, request } from 'undici'
import { consul } from '../../src/registry/consul/provider.js'
import { startConsulServer } from '../support/consul-server/index.js'
import type { ChaosTarget } from './driver.js'
import type { TruthInstance } from './ledger.js'
import type { Rng } from './prng.js'

const SERVICES = ['alpha', 'beta', 'gamma'] as const
const AGENT_NODE = 'node-1'
const CATALOG_NODE = 'node-2'
const IDS_PER_NODE = 3
const REQUEST_DEADLINE_MS = 20_000
export const WAIT_MS = 5_000

type Status = 'passing' | 'warning' | 'critical'

interface Registered {
  readonly node: string
  readonly id: string
  readonly address: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  readonly weight: number
  /** Catalog instances only: the status of their one check. */
  readonly status: Status
}

interface HealthEntry {
  readonly Node: { readonly Node: string; readonly Address: string }
  readonly Service: {
    readonly ID: string
    readonly Address: string
    readonly Port: number
    readonly Tags: readonly string[] | null
    readonly Meta: Readonly<Record<string, string>> | null
    readonly Weights: { readonly Passing: number }
  }
}

export async function consulTarget(): Promise<ChaosTarget> {
  const server = await startConsulServer()
  server.addNode(CATALOG_NODE, { address: '127.0.0.2' })
  const http = new Agent({ connections: 4 })
  const model = new Map<string, Map<string, Registered>>(SERVICES.map((s) => [s, new Map()]))
  let seq = 0
  /**
   * While a count-based fault is pending (the next n requests fail or drop), this driver writes
   * only to the catalog, which takes no HTTP request: the faults then meet the watches woken by
   * those writes instead of the driver's own agent calls.
   */
  let catalogOnly = false
  // Parked blocking queries, by path and index, for the failure message.
  const parked = new Map<string, number>()
  server.events.on('blocking', (q: { path: string; minIndex: number }) => {
    const k = `${q.path}?index=${String(q.minIndex)}`
    parked.set(k, (parked.get(k) ?? 0) + 1)
  })
  server.events.on('unblocked', (q: { path: string; minIndex: number }) => {
    const k = `${q.path}?index=${String(q.minIndex)}`
    const n = (parked.get(k) ?? 1) - 1
    if (n <= 0) parked.delete(k)
    else parked.set(k, n)
  })

  /** Resolves at the next health query any client sends, or after `timeoutMs`. */
  const healthQuery = (timeoutMs: number): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        server.events.off('request', onRequest)
        resolve()
      }
      const onRequest = (r: { path: string }): void => {
        if (r.path.startsWith('/v1/health/service/')) done()
      }
      const timer = setTimeout(done, timeoutMs)
      server.events.on('request', onRequest)
    })

  /** One agent API call, retried through storms and drops until Consul answers one of `ok`. */
  const call = async (method: 'GET' | 'PUT', path: string, body?: unknown, ok = [200]) => {
    const started = Date.now()
    for (;;) {
      try {
        const res = await request(`${server.url}${path}`, {
          method,
          dispatcher: http,
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        })
        const text = await res.body.text()
        if (ok.includes(res.statusCode)) return text
        if (Date.now() - started > REQUEST_DEADLINE_MS)
          throw new Error(`${method} ${path}: ${res.statusCode} ${text}`)
      } catch (err) {
        if (Date.now() - started > REQUEST_DEADLINE_MS) throw err
      }
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  const write = async (service: string, r: Registered): Promise<void> => {
    if (r.node === AGENT_NODE) {
      await call('PUT', '/v1/agent/service/register', {
        ID: r.id,
        Name: service,
        Address: r.address,
        Port: r.port,
        Tags: r.tags,
        Meta: r.meta,
        Weights: { Passing: r.weight, Warning: 1 },
      })
    } else {
      server.registerService({
        node: r.node,
        name: service,
        id: r.id,
        address: r.address,
        port: r.port,
        tags: [...r.tags],
        meta: { ...r.meta },
        weights: { passing: r.weight, warning: 1 },
        checks: [{ status: r.status }],
      })
    }
    model.get(service)?.set(r.id, r)
  }

  const randomRegistration = (rng: Rng, node: string, id: string, status: Status): Registered => ({
    node,
    id,
    // Empty half the time: the instance then gets its node's address (Service.Address || Node.Address).
    address: rng.chance(0.5) ? '' : `127.0.0.${String(rng.between(3, 6))}`,
    port: rng.between(1024, 65535),
    tags: ['a', 'b', 'c'].filter(() => rng.chance(0.5)),
    meta: rng.chance(0.7) ? { seq: String(seq) } : {},
    weight: rng.between(1, 3),
    status,
  })

  return {
    registry: 'consul',
    services: SERVICES,
    faultKinds: ['regress', 'storm', 'drop', 'restart'],
    // Two settings differ from the defaults, to keep a CI run within seconds:
    // - the retry ceiling is etcd's default (1 s) instead of Consul's 30 s;
    // - long polls wait 5 s instead of 5 min. After an index regression (a snapshot restore)
    //   the watch that sees an index go back resets the others (docs/design/consul.md#index-rules),
    //   but when every watch was between requests at the restore (each just woken by a write),
    //   none sees a lower index: each sends its old, higher one, and Consul parks it until the
    //   index passes it or the wait ends. No answer tells the client; the wait bounds the lag.
    provider: () => consul({ url: server.url, backoff: { maxMs: 1_000 }, waitMs: WAIT_MS }),

    async op(rng) {
      seq++
      const service = rng.pick(SERVICES)
      const present = model.get(service) as Map<string, Registered>
      const node = catalogOnly ? CATALOG_NODE : rng.pick([AGENT_NODE, CATALOG_NODE])
      // Service IDs are unique per node in Consul, across services: name them after both.
      const prefix = `${service}-${node === AGENT_NODE ? 'a' : 'c'}`
      const mine = [...present.values()].filter((r) => r.node === node)
      const roll = rng.next()
      if (mine.length === 0 || (roll < 0.35 && mine.length < IDS_PER_NODE)) {
        const free = Array.from({ length: IDS_PER_NODE }, (_, i) => `${prefix}${String(i)}`).filter(
          (id) => !present.has(id),
        )
        const id = rng.pick(free)
        await write(service, randomRegistration(rng, node, id, 'passing'))
        return `register ${service}/${node}/${id}`
      }
      const r = rng.pick(mine)
      if (roll < 0.55) {
        if (node === AGENT_NODE)
          await call('PUT', `/v1/agent/service/deregister/${r.id}`, undefined, [200, 404])
        else server.removeService(node, r.id)
        present.delete(r.id)
        return `deregister ${service}/${node}/${r.id}`
      }
      if (roll < 0.65) {
        await write(service, r)
        return `rewrite ${service}/${node}/${r.id} unchanged`
      }
      if (roll < 0.8 && node === CATALOG_NODE) {
        const status = rng.pick<Status>(['passing', 'warning', 'critical'])
        server.setCheck(node, `service:${r.id}`, status, { serviceId: r.id })
        present.set(r.id, { ...r, status })
        return `health ${service}/${node}/${r.id} ${status}`
      }
      await write(service, randomRegistration(rng, node, r.id, r.status))
      return `update ${service}/${node}/${r.id}`
    },

    fault(kind, rng) {
      const none = (): Promise<void> => Promise.resolve()
      const endCatalogOnly = (): Promise<void> => {
        catalogOnly = false
        return Promise.resolve()
      }
      switch (kind) {
        case 'regress': {
          const to = rng.between(1, Math.max(1, server.index - 1))
          server.faults.regressIndex(to)
          return Promise.resolve({ what: `index regressed to ${String(to)}`, end: none })
        }
        case 'storm': {
          if (rng.chance(0.5)) {
            // A leader election: every default-consistency read answers 500 until it ends.
            server.faults.leaderless = true
            return Promise.resolve({
              what: 'no cluster leader (reads answer 500) for a while',
              // It lasts until a watch has met it (or 3 s), so that it is not over unseen.
              end: async () => {
                await healthQuery(3_000)
                server.faults.leaderless = false
              },
            })
          }
          const n = rng.between(2, 8)
          const status = rng.pick([500, 429])
          if (status === 429) server.faults.rateLimitNext(n)
          else server.faults.failNext(n)
          catalogOnly = true
          return Promise.resolve({
            what: `next ${String(n)} requests answer ${String(status)}`,
            end: endCatalogOnly,
          })
        }
        case 'drop': {
          if (rng.chance(0.5)) {
            server.faults.dropConnections()
            return Promise.resolve({ what: 'every connection dropped', end: none })
          }
          const n = rng.between(1, 4)
          server.faults.dropNextRequests(n)
          catalogOnly = true
          return Promise.resolve({
            what: `next ${String(n)} requests dropped`,
            end: endCatalogOnly,
          })
        }
        case 'restart': {
          const persist = rng.chance(0.5)
          server.restartAgent({ persist, dropConnections: true })
          if (!persist)
            for (const present of model.values())
              for (const [id, r] of present) if (r.node === AGENT_NODE) present.delete(id)
          return Promise.resolve({
            what: persist ? 'agent restarted with its data dir' : 'agent restarted, data dir lost',
            end: none,
          })
        }
        default:
          return Promise.reject(new Error(`unknown Consul fault ${kind}`))
      }
    },

    async truth(service) {
      const text = await call('GET', `/v1/health/service/${service}?passing=1`)
      return (JSON.parse(text) as HealthEntry[]).map((e): TruthInstance => ({
        key: `${e.Node.Node}/${e.Service.ID}`,
        host: e.Service.Address === '' ? e.Node.Address : e.Service.Address,
        port: e.Service.Port,
        tags: e.Service.Tags ?? [],
        meta: e.Service.Meta ?? {},
        weight: e.Service.Weights.Passing,
      }))
    },

    describe() {
      return `Consul index ${String(server.index)}; parked queries: ${[...parked.keys()].join(', ') || 'none'}`
    },

    async close() {
      await http.close()
      await server.close()
    },
  }
}
