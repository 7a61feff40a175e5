/**
 * Deregister → last request: under steady load through `wf.dispatcher`, one of three instances
 * is deregistered in etcd (by a writer in another process); how long until that instance stops
 * receiving new requests? Measured at the instance: the arrival time of the last request it got,
 * minus the wall-clock stamp taken just before the delete was sent. Requests already in flight
 * finish normally; only new arrivals count.
 */
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { request } from 'undici'
import { createWayfind, etcd } from '../src/index.js'
import { HelperProcess } from './lib/child.js'
import { startEtcd } from './lib/etcd.js'
import {
  check,
  ms,
  note,
  printTable,
  writeResults,
  type BenchOptions,
  type BenchOutcome,
} from './lib/report.js'
import { summarize, wallMs } from './lib/stats.js'
import { barsSvg } from './lib/svg.js'

const SERVICE = 'bench-dereg'
const PREFIX = `/services/${SERVICE}/`
const CONCURRENCY = 16

interface Backend {
  readonly id: string
  readonly server: Server
  readonly port: number
  /** Wall-clock arrival time of the last request. */
  lastArrival: number
  /** Latest client-side send time (the `x-sent` header: when request() picked this instance). */
  lastSent: number
  /** Sent times of every request, to count those sent after a given moment. */
  sent: number[]
  count: number
}

async function backend(id: string): Promise<Backend> {
  const b: Backend = {
    id,
    server: createServer(),
    port: 0,
    lastArrival: 0,
    lastSent: 0,
    sent: [],
    count: 0,
  }
  b.server.on('request', (req, res) => {
    b.lastArrival = wallMs()
    const sent = Number(req.headers['x-sent'])
    b.lastSent = Math.max(b.lastSent, sent)
    b.sent.push(sent)
    b.count++
    req.resume()
    res.end('ok')
  })
  b.server.listen(0, '127.0.0.1')
  await once(b.server, 'listening')
  const address = b.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return Object.assign(b, { port: address.port })
}

export async function run({ quick }: BenchOptions): Promise<BenchOutcome> {
  const server = await startEtcd()
  const backends = await Promise.all(['b0', 'b1', 'b2'].map(backend))
  const wf = createWayfind({ registry: etcd({ hosts: [server.host] }), strategy: 'round-robin' })
  let writer: HelperProcess | undefined
  const loadState = { running: true }
  const load: Promise<void>[] = []
  let failures = 0
  try {
    writer = (
      await HelperProcess.start(new URL('./lib/etcd-writer.ts', import.meta.url).pathname, [
        server.host,
      ])
    ).helper
    const w = writer
    const put = (b: Backend): Promise<unknown> =>
      w.request({
        type: 'put',
        key: `${PREFIX}${b.id}`,
        service: SERVICE,
        instanceId: b.id,
        port: b.port,
        seq: 0,
      })
    for (const b of backends) await put(b)
    await wf.resolve(SERVICE, { timeoutMs: 10_000 })
    const waitFor = (pred: (ids: readonly string[]) => boolean): Promise<number> =>
      new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => {
          off()
          reject(new Error('no change event within 5 s'))
        }, 5_000)
        const off = wf.events.on('change', (e) => {
          if (e.service === SERVICE && pred(e.instances.map((i) => i.id))) {
            clearTimeout(timer)
            off()
            resolve(wallMs())
          }
        })
      })

    // Steady closed-loop load: CONCURRENCY requests always in flight.
    for (let k = 0; k < CONCURRENCY; k++)
      load.push(
        (async () => {
          while (loadState.running) {
            try {
              // The dispatcher picks the instance synchronously inside request(): this stamp is
              // the pick time, as seen by the client.
              const res = await request(`http://${SERVICE}/ping`, {
                dispatcher: wf.dispatcher,
                headers: { 'x-sent': wallMs().toFixed(3) },
              })
              await res.body.dump()
            } catch {
              failures++
            }
          }
        })(),
      )

    const rounds = quick ? 4 : 30
    const lastRequest: number[] = []
    const lastSent: number[] = []
    const toEvent: number[] = []
    const afterEvent: number[] = []
    const settle = (msToWait: number): Promise<void> => new Promise((r) => setTimeout(r, msToWait))
    for (let r = 0; r < rounds; r++) {
      const victim = backends[r % backends.length] as Backend
      // Let the load reach every instance before the change.
      await settle(100)
      if (victim.count === 0)
        throw new Error(`instance ${victim.id} received no traffic before its deregistration`)
      victim.sent = []
      const seenRemoved = waitFor((ids) => !ids.includes(victim.id))
      const { ts } = (await w.request({ type: 'delete', key: `${PREFIX}${victim.id}` })) as {
        ts: number
      }
      const eventAt = await seenRemoved
      // Observation window: anything sent later than the event is a leak, and shows as a long tail.
      await settle(250)
      lastRequest.push(Math.max(0, victim.lastArrival - ts))
      lastSent.push(Math.max(0, victim.lastSent - ts))
      toEvent.push(eventAt - ts)
      afterEvent.push(victim.sent.filter((t) => t > eventAt).length)
      const seenAdded = waitFor((ids) => ids.includes(victim.id))
      await put(victim)
      await seenAdded
    }
    loadState.running = false
    await Promise.all(load)

    const sLast = summarize(lastRequest)
    const sSent = summarize(lastSent)
    const sEvent = summarize(toEvent)
    const late = afterEvent.reduce((a, b) => a + b, 0)
    printTable(
      `Deregister → last request under load (${rounds} rounds, ${CONCURRENCY} requests in flight, 3 instances, etcd)`,
      ['measure', 'p50', 'p90', 'p99', 'max'],
      [
        [
          'delete → last request sent to the instance',
          ms(sSent.p50),
          ms(sSent.p90),
          ms(sSent.p99),
          ms(sSent.max),
        ],
        [
          'delete → last request arrives at the instance',
          ms(sLast.p50),
          ms(sLast.p90),
          ms(sLast.p99),
          ms(sLast.max),
        ],
        ['delete → change event', ms(sEvent.p50), ms(sEvent.p90), ms(sEvent.p99), ms(sEvent.max)],
      ],
    )
    note(
      `  requests sent to a removed instance after its change event: ${late} in ${rounds} rounds; request failures: ${failures}`,
    )
    note(
      "  (client, instances and load share one event loop, so the event lags the delete by the load's queueing)",
    )
    writeResults(
      'deregister',
      {
        rounds,
        concurrency: CONCURRENCY,
        lastSentMs: sSent,
        lastArrivalMs: sLast,
        changeEventMs: sEvent,
        requestsSentAfterEvent: late,
        failures,
        samples: { lastSent, lastRequest, toEvent, afterEvent },
      },
      {
        'deregister.svg': barsSvg('Deregister → last request (etcd, under load)', 'ms', [
          { label: 'last request sent p50', value: sSent.p50 },
          { label: 'last request sent p99', value: sSent.p99 },
          { label: 'last arrival p50', value: sLast.p50 },
          { label: 'last arrival p99', value: sLast.p99 },
          { label: 'change event p50', value: sEvent.p50 },
          { label: 'change event p99', value: sEvent.p99 },
        ]),
      },
    )
    return {
      name: 'deregister',
      checks: [
        check('requests sent to a removed instance after its change event', late, '<=', 0, ''),
        check('failed requests during deregistrations', failures, '<=', 0, ''),
      ],
    }
  } finally {
    loadState.running = false
    await Promise.allSettled(load)
    await wf.close()
    await writer?.stop()
    for (const b of backends) b.server.close()
    await server.remove()
  }
}
