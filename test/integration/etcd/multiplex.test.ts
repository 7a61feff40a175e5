/**
 * Every watched service of one etcd client shares one gRPC Watch stream (watch-mux.ts), against
 * a real etcd: counted with etcd's own gauges, events routed to the right service, a service
 * that leaves cancelled on the server without disturbing the others, and every watcher resumed
 * from its own revision after the connection drops.
 */
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseEtcdOptions } from '../../../src/registry/etcd/options.js'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import { EtcdServer } from '../../support/etcd.js'
import { TcpProxy } from '../../support/tcp-proxy.js'
import { eventually } from '../../support/wait.js'
import { hasIds, Recorder, wayfindValue } from './helpers.js'

let server: EtcdServer
let writer: Etcd3

beforeAll(async () => {
  server = await EtcdServer.start()
  writer = server.client()
})

afterAll(async () => {
  writer.close()
  await server.remove()
})

/** etcd's own count of open watch streams and watchers (its /metrics gauges). */
async function gauges(): Promise<{ streams: number; watchers: number }> {
  const text = await (await fetch(`http://${server.host}/metrics`)).text()
  const gauge = (name: string): number =>
    Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  return {
    streams: gauge('etcd_debugging_mvcc_watch_stream_total'),
    watchers: gauge('etcd_debugging_mvcc_watcher_total'),
  }
}

async function untilGauges(streams: number, watchers: number, what: string): Promise<void> {
  await eventually(
    async () => {
      const g = await gauges()
      return g.streams === streams && g.watchers === watchers ? true : undefined
    },
    { timeoutMs: 10_000, intervalMs: 20, what },
  )
}

describe('one Watch stream per etcd client', () => {
  it('watches 20 services over one stream and routes each event to its own service', async () => {
    const prefix = '/mx1/'
    const names = Array.from({ length: 20 }, (_, i) => `svc${i}`)
    for (const [i, n] of names.entries())
      await writer.put(`${prefix}${n}/a`).value(wayfindValue('a', 8000 + i, { name: n }))
    const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
    const recs = names.map(() => new Recorder())
    try {
      for (const [i, n] of names.entries())
        provider.watch(n, recs[i]!, { signal: new AbortController().signal })
      for (const r of recs) await r.until(hasIds('a'))
      await untilGauges(1, 20, 'one stream carrying 20 watchers')
      const before = recs.map((r) => r.snapshots.length)
      await writer.put(`${prefix}svc7/b`).value(wayfindValue('b', 9007, { name: 'svc7' }))
      await recs[7]!.until(hasIds('a', 'b'))
      await writer.put(`${prefix}svc13/c`).value(wayfindValue('c', 9013, { name: 'svc13' }))
      await recs[13]!.until(hasIds('a', 'c'))
      // Nothing else moved: each event reached its own service only.
      for (const [i, r] of recs.entries())
        expect(r.snapshots.length - before[i]!).toBe(i === 7 || i === 13 ? 1 : 0)
      expect(recs[7]!.last?.instances.map((x) => x.port).sort()).toEqual([8007, 9007])
    } finally {
      await provider.close()
    }
    await untilGauges(0, 0, 'stream closed after the last watcher left')
  })

  it('cancels a service that leaves on the shared stream; the others keep their events', async () => {
    const prefix = '/mx2/'
    const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
    const names = ['a', 'b', 'c']
    const recs = names.map(() => new Recorder())
    const acs = names.map(() => new AbortController())
    try {
      for (const [i, n] of names.entries()) provider.watch(n, recs[i]!, { signal: acs[i]!.signal })
      for (const r of recs) await r.until(() => true)
      await untilGauges(1, 3, 'three watchers on one stream')
      acs[1]!.abort()
      await untilGauges(1, 2, 'the leaver cancelled on the server')
      const left = recs[1]!.snapshots.length
      await writer.put(`${prefix}a/x`).value(wayfindValue('x', 8001, { name: 'a' }))
      await writer.put(`${prefix}b/y`).value(wayfindValue('y', 8002, { name: 'b' }))
      await writer.put(`${prefix}c/z`).value(wayfindValue('z', 8003, { name: 'c' }))
      await recs[0]!.until(hasIds('x'))
      await recs[2]!.until(hasIds('z'))
      expect(recs[1]!.snapshots.length).toBe(left)
      acs[0]!.abort()
      acs[2]!.abort()
      await untilGauges(0, 0, 'stream closed with its last watcher')
    } finally {
      await provider.close()
    }
  })

  it('resumes every service from its own revision after the connection drops', async () => {
    const prefix = '/mx3/'
    const proxy = await TcpProxy.start({ port: server.clientPort })
    const provider = new EtcdProvider(
      parseEtcdOptions({ hosts: proxy.host, prefix, backoff: { initialMs: 10, maxMs: 100 } }),
    )
    const names = ['p', 'q', 'r', 's']
    const recs = names.map(() => new Recorder())
    try {
      for (const [i, n] of names.entries())
        provider.watch(n, recs[i]!, { signal: new AbortController().signal })
      for (const r of recs) await r.until(() => true)
      proxy.cut()
      for (const r of recs) await r.untilError(() => true)
      // Written while every watcher is cut off: each must see its own on resume.
      for (const [i, n] of names.entries())
        await writer.put(`${prefix}${n}/k`).value(wayfindValue(`k${i}`, 8100 + i, { name: n }))
      proxy.heal()
      for (const [i, r] of recs.entries()) await r.until(hasIds(`k${i}`), 15_000)
      await untilGauges(1, 4, 'one stream again after the reconnect')
    } finally {
      await provider.close()
      await proxy.close()
    }
  })
})
