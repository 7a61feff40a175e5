/**
 * Helper process: the registry writer for etcd benchmarks. It has its own etcd3 client (its own
 * TCP connection) and stamps each write with the wall clock just before sending it, so that the
 * measuring process can compute change → event latency without sharing its event loop.
 *
 * Usage: forked by `HelperProcess.start('bench/lib/etcd-writer.ts', [host])`.
 */
import { noop } from 'cockatiel'
import { Etcd3 } from 'etcd3'
import { sendReady, serveRequests, type Message } from './child.js'
import { wallMs } from './stats.js'

const host = process.argv[2]
if (host === undefined) throw new Error('usage: etcd-writer <host:port>')

const client = new Etcd3({
  hosts: host,
  faultHandling: { host: () => noop, global: noop },
  defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 10_000 }),
})

/** The value wayfind's registrar writes (docs/design/etcd.md#wayfinds-own-value). */
export function registrationValue(
  service: string,
  id: string,
  port: number,
  meta: Record<string, string>,
): string {
  return JSON.stringify({
    id,
    name: service,
    address: '127.0.0.1',
    port,
    tags: [],
    meta,
    weight: 1,
  })
}

serveRequests(
  async (msg: Message): Promise<Message> => {
    switch (msg.type) {
      case 'put': {
        const { key, service, instanceId, port, seq } = msg as {
          key: string
          service: string
          instanceId: string
          port: number
          seq: number
        }
        const ts = wallMs()
        await client
          .put(key)
          .value(
            registrationValue(service, instanceId, port, { seq: String(seq), ts: ts.toFixed(3) }),
          )
        return { ts, ackMs: wallMs() - ts }
      }
      case 'delete': {
        const ts = wallMs()
        await client.delete().key(msg.key as string)
        return { ts, ackMs: wallMs() - ts }
      }
      case 'fill': {
        // Many instances, in transactions of 100 puts (etcd's default --max-txn-ops is 128).
        const { prefix, service, count, start } = msg as {
          prefix: string
          service: string
          count: number
          start?: number
        }
        const first = start ?? 0
        for (let i = first; i < first + count; i += 100) {
          const ops = []
          for (let k = i; k < Math.min(first + count, i + 100); k++) {
            const id = `i-${String(k)}`
            ops.push(
              client.put(`${prefix}${id}`).value(
                registrationValue(service, id, 10_000 + (k % 50_000), {
                  zone: `z${String(k % 3)}`,
                }),
              ),
            )
          }
          await client
            .if(`${prefix}__none__`, 'Version', '==', 0)
            .then(...ops)
            .commit()
        }
        return { count }
      }
      case 'fillMany': {
        // `services` services of `perService` instances each, no metadata, 100 puts per txn.
        const { root, services, perService, name } = msg as {
          root: string
          services: number
          perService: number
          name?: string
        }
        const keys: [string, string][] = []
        for (let sv = 0; sv < services; sv++)
          for (let k = 0; k < perService; k++) {
            const service = `${name ?? 'svc'}-${String(sv)}`
            const id = `i-${String(k)}`
            keys.push([`${root}${service}/${id}`, registrationValue(service, id, 20_000 + k, {})])
          }
        for (let i = 0; i < keys.length; i += 100) {
          const ops = keys.slice(i, i + 100).map(([k, v]) => client.put(k).value(v))
          await client
            .if(`${root}__none__`, 'Version', '==', 0)
            .then(...ops)
            .commit()
        }
        return { count: keys.length }
      }
      case 'clear': {
        await client.delete().prefix(msg.prefix as string)
        return {}
      }
      default:
        throw new Error(`unknown request ${String(msg.type)}`)
    }
  },
  () => {
    client.close()
    return Promise.resolve()
  },
)

sendReady()
