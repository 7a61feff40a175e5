/**
 * The etcd side of the chaos suite: a real etcd process, wayfind watching it through a TCP
 * proxy, and the writes going straight to etcd. Faults: SIGKILL + restart (with the watcher's
 * path cut during the outage or not), a proxy cut with writes while the watcher is away, and a
 * compaction past the watcher's revision while it is away (it must re-list and diff).
 */
import type { Etcd3 } from 'etcd3'
import { etcd } from '../../src/registry/etcd/provider.js'
import { EtcdServer } from '../support/etcd.js'
import { TcpProxy } from '../support/tcp-proxy.js'
import type { ChaosTarget } from './driver.js'
import type { TruthInstance } from './ledger.js'
import type { Rng } from './prng.js'

const PREFIX = '/chaos/'
const SERVICES = ['alpha', 'beta', 'gamma'] as const
/** Ids per service: small, so that ids come back after a deregistration. */
const IDS = 5
/** How long a write retries while etcd restarts. */
const WRITE_DEADLINE_MS = 20_000

interface Value {
  readonly id: string
  readonly name: string
  readonly address: string
  readonly port: number
  readonly tags: readonly string[]
  readonly meta: Readonly<Record<string, string>>
  readonly weight: number
}

function randomValue(rng: Rng, service: string, id: string, seq: number): Value {
  return {
    id,
    name: service,
    address: `127.0.0.${String(rng.between(1, 4))}`,
    port: rng.between(1024, 65535),
    tags: ['a', 'b', 'c'].filter(() => rng.chance(0.5)),
    meta: rng.chance(0.7) ? { seq: String(seq) } : {},
    weight: rng.between(1, 3),
  }
}

async function retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now()
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      if (Date.now() - started > WRITE_DEADLINE_MS)
        throw new Error(`${what} kept failing for ${WRITE_DEADLINE_MS} ms`, { cause: err })
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

export async function etcdTarget(): Promise<ChaosTarget> {
  const server = await EtcdServer.start()
  const proxy = await TcpProxy.start({ port: server.clientPort })
  const admin: Etcd3 = server.client()
  // What the driver believes is registered (to pick deregister/update targets).
  const model = new Map<string, Map<string, Value>>(SERVICES.map((s) => [s, new Map()]))
  let seq = 0

  const key = (service: string, id: string): string => `${PREFIX}${service}/${id}`
  const put = async (v: Value): Promise<void> => {
    await retrying(`put ${key(v.name, v.id)}`, () =>
      admin.put(key(v.name, v.id)).value(JSON.stringify(v)).exec(),
    )
    model.get(v.name)?.set(v.id, v)
  }

  return {
    registry: 'etcd',
    services: SERVICES,
    faultKinds: ['sigkill', 'cut', 'compact'],
    provider: () => etcd({ hosts: [proxy.host], prefix: PREFIX }),

    async op(rng) {
      const service = rng.pick(SERVICES)
      const present = model.get(service) as Map<string, Value>
      const ids = [...present.keys()]
      const roll = rng.next()
      seq++
      if (ids.length === 0 || (roll < 0.4 && ids.length < IDS)) {
        const free = Array.from({ length: IDS }, (_, i) => `i${String(i)}`).filter(
          (id) => !present.has(id),
        )
        const id = rng.pick(free)
        await put(randomValue(rng, service, id, seq))
        return `register ${service}/${id}`
      }
      const id = rng.pick(ids)
      if (roll < 0.65) {
        await retrying(`delete ${key(service, id)}`, () =>
          admin.delete().key(key(service, id)).exec(),
        )
        present.delete(id)
        return `deregister ${service}/${id}`
      }
      if (roll < 0.75) {
        // The same value again: a real etcd event that changes nothing (must not be announced).
        await put(present.get(id) as Value)
        return `rewrite ${service}/${id} unchanged`
      }
      await put(randomValue(rng, service, id, seq))
      return `update ${service}/${id}`
    },

    async fault(kind, rng) {
      switch (kind) {
        case 'sigkill': {
          // Half the time the watcher's path stays cut after the restart, so that the writes
          // that follow happen while it is away; otherwise it reconnects on its own.
          const holdCut = rng.chance(0.5)
          if (holdCut) proxy.cut()
          await server.kill('SIGKILL')
          await server.restart()
          return {
            what: holdCut ? 'SIGKILL + restart, watcher cut off' : 'SIGKILL + restart',
            end: () => {
              proxy.heal()
              return Promise.resolve()
            },
          }
        }
        case 'cut':
          proxy.cut()
          return {
            what: 'proxy cut',
            end: () => {
              proxy.heal()
              return Promise.resolve()
            },
          }
        case 'compact':
          proxy.cut()
          return {
            what: 'proxy cut, then compaction past the watcher',
            end: async () => {
              const head = await retrying('put for compaction', () =>
                admin.put('/chaos-other/head').value(String(seq)).exec(),
              )
              await retrying('compact', () =>
                admin.kv.compact({ revision: head.header.revision, physical: true }),
              )
              proxy.heal()
            },
          }
        default:
          throw new Error(`unknown etcd fault ${kind}`)
      }
    },

    async truth(service) {
      const kvs = await retrying(`range ${PREFIX}${service}/`, () =>
        admin.getAll().prefix(`${PREFIX}${service}/`).strings(),
      )
      return Object.entries(kvs).map(([k, raw]): TruthInstance => {
        const v = JSON.parse(raw) as Value
        return {
          key: k,
          host: v.address,
          port: v.port,
          tags: v.tags,
          meta: v.meta,
          weight: v.weight,
        }
      })
    },

    describe() {
      return `etcd ${server.running ? 'running' : 'down'}; proxy connections ${String(proxy.openConnections)}`
    },

    async close() {
      await proxy.close()
      await server.remove()
    },
  }
}
