/**
 * Helper process: the Consul test server, run outside the measuring process so that its CPU
 * (serving and waking blocking queries) does not share the measuring event loop. It is also the
 * writer: a change is applied to its catalog directly, stamped with the wall clock just before.
 *
 * Usage: forked by `HelperProcess.start('bench/lib/consul-server-process.ts')`; the ready message
 * carries `url`.
 */
import { startConsulServer } from '../../test/support/consul-server/index.js'
import { sendReady, serveRequests, type Message } from './child.js'
import { wallMs } from './stats.js'

const server = await startConsulServer({ maxConnsPerClient: Number(process.argv[2] ?? 200) })

serveRequests(
  (msg: Message): Promise<Message> => Promise.resolve(handle(msg)),
  () => server.close(),
)

function handle(msg: Message): Message {
  switch (msg.type) {
    case 'register': {
      const { service, instanceId, port, seq } = msg as {
        service: string
        instanceId: string
        port: number
        seq: number
      }
      const ts = wallMs()
      server.registerService({
        name: service,
        id: instanceId,
        address: '127.0.0.1',
        port,
        meta: { seq: String(seq), ts: ts.toFixed(3) },
        checks: [{ status: 'passing' }],
      })
      return { ts }
    }
    case 'remove': {
      const ts = wallMs()
      const existed = server.removeService('node-1', msg.instanceId as string)
      return { ts, existed }
    }
    case 'fill': {
      const { service, count, start } = msg as { service: string; count: number; start?: number }
      const first = start ?? 0
      for (let k = first; k < first + count; k++)
        server.registerService({
          name: service,
          id: `i-${String(k)}`,
          address: '127.0.0.1',
          port: 10_000 + (k % 50_000),
          meta: { zone: `z${String(k % 3)}` },
          checks: [{ status: 'passing' }],
        })
      return { count }
    }
    case 'fillMany': {
      const { services, perService, name } = msg as {
        services: number
        perService: number
        name?: string
      }
      for (let sv = 0; sv < services; sv++)
        for (let k = 0; k < perService; k++)
          server.registerService({
            name: `${name ?? 'svc'}-${String(sv)}`,
            id: `${name ?? 'svc'}-${String(sv)}-${String(k)}`,
            address: '127.0.0.1',
            port: 20_000 + k,
            checks: [{ status: 'passing' }],
          })
      return { count: services * perService }
    }
    case 'stats':
      return {
        open: server.stats.openConnections(),
        peak: server.stats.peakConnections(),
        rejected: server.stats.rejectedConnections(),
        blocking: server.stats.blockingQueries(),
      }
    default:
      throw new Error(`unknown request ${String(msg.type)}`)
  }
}

sendReady({ url: server.url })
