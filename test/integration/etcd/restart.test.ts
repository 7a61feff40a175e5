/**
 * etcd SIGKILLed and restarted under a live watch: every event written while the watcher was
 * away arrives once, in revision order, and the snapshot converges.
 */
import { EventEmitter } from 'node:events'
import type { IEvent } from 'etcd3'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createEtcdClient, prefixEnd } from '../../../src/registry/etcd/client.js'
import { parseEtcdOptions } from '../../../src/registry/etcd/options.js'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import { runRevisionWatch } from '../../../src/registry/etcd/revision-watch.js'
import { ErrorCode } from '../../../src/errors.js'
import { EtcdServer } from '../../support/etcd.js'
import { TcpProxy } from '../../support/tcp-proxy.js'
import { withDeadline } from '../../support/wait.js'
import { hasIds, putEventually, Recorder, wayfindValue } from './helpers.js'

let server: EtcdServer

beforeAll(async () => {
  server = await EtcdServer.start()
})

afterAll(async () => {
  await server.remove()
})

it('delivers every event once, in order, across SIGKILL + restart with writes while it was away', async () => {
  const prefix = '/r1/'
  const key = Buffer.from(`${prefix}svc/`)
  // The watcher goes through a proxy held shut until the writes are done, so they really
  // happen while it is disconnected.
  const proxy = await TcpProxy.start({ port: server.clientPort })
  const options = parseEtcdOptions({ hosts: proxy.host, prefix })
  const client = createEtcdClient(options)
  const writer = server.client()
  const seen: bigint[] = []
  const keys: string[] = []
  const events = new EventEmitter()
  const ac = new AbortController()
  const loop = runRevisionWatch(
    client,
    options,
    { key, end: prefixEnd(key) },
    {
      onList: () => {},
      onEvents: (evs: readonly IEvent[]) => {
        for (const e of evs) {
          seen.push(BigInt(e.kv.mod_revision))
          keys.push(`${e.type}:${e.kv.key.toString().slice(key.length)}`)
        }
        events.emit('events')
      },
      onError: () => {
        events.emit('error-reported')
      },
      onWatching: () => {
        events.emit('watching')
      },
    },
    ac.signal,
    'restart test',
  )
  const want: bigint[] = []
  const wantKeys: string[] = []
  const put = async (k: string): Promise<void> => {
    want.push(
      BigInt((await writer.put(`${prefix}svc/${k}`).value(wayfindValue(k, 9000))).header.revision),
    )
    wantKeys.push(`Put:${k}`)
  }
  try {
    await withDeadline(new Promise((r) => events.once('watching', r)), 10_000, 'first watch')
    await put('a1')
    await put('a2')
    const disconnected = new Promise((r) => events.once('error-reported', r))
    proxy.cut()
    await server.kill('SIGKILL')
    await withDeadline(disconnected, 10_000, 'the watcher to notice the outage')
    await server.restart()
    for (const k of ['r1', 'r2', 'r3']) {
      await putEventually(writer, `${prefix}svc/${k}`, wayfindValue(k, 9000))
      const got = await writer.get(`${prefix}svc/${k}`).exec()
      want.push(BigInt(got.kvs[0]!.mod_revision))
      wantKeys.push(`Put:${k}`)
    }
    const del = await writer.delete().key(`${prefix}svc/a1`)
    want.push(BigInt(del.header.revision))
    wantKeys.push('Delete:a1')
    const healedAt = performance.now()
    proxy.heal()
    await withDeadline(
      (async () => {
        while (seen.length < want.length) await new Promise((r) => events.once('events', r))
      })(),
      15_000,
      'every event after the restart',
    )
    const firstAfterMs = performance.now() - healedAt
    expect(seen).toEqual(want)
    expect(keys).toEqual(wantKeys)
    // Nothing more arrives afterwards (no replays): one more write is the next event.
    await put('z')
    await withDeadline(
      (async () => {
        while (seen.length < want.length) await new Promise((r) => events.once('events', r))
      })(),
      10_000,
      'the last event',
    )
    expect(seen).toEqual(want)
    process.stdout.write(
      `[measure] etcd restart: proxy healed -> all missed events delivered in ${firstAfterMs.toFixed(0)} ms\n`,
    )
  } finally {
    ac.abort()
    await loop
    client.close()
    await proxy.close()
  }
})

it('provider: snapshots converge after SIGKILL, a 5 s outage and a restart (measures ready -> first event)', async () => {
  const prefix = '/r2/'
  const writer = server.client()
  await putEventually(writer, `${prefix}svc/a`, wayfindValue('a', 8001))
  const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
  const rec = new Recorder()
  const ac = new AbortController()
  try {
    provider.watch('svc', rec, { signal: ac.signal })
    await rec.until(hasIds('a'))
    const errorsBefore = rec.errors.length
    const killedAt = performance.now()
    await server.kill('SIGKILL')
    await rec.untilError(
      (e) => e.code === ErrorCode.REGISTRY_UNAVAILABLE && e.retryable,
      10_000,
      errorsBefore,
    )
    // A 5 s outage (fault injection): long enough for every retry loop to reach its largest delay.
    await new Promise((r) => setTimeout(r, Math.max(0, 5_000 - (performance.now() - killedAt))))
    await server.restart()
    const readyAt = performance.now()
    await writer.put(`${prefix}svc/b`).value(wayfindValue('b', 8002))
    await rec.until(hasIds('a', 'b'), 10_000)
    const ms = performance.now() - readyAt
    process.stdout.write(
      `[measure] etcd restart after a 5 s outage: ready -> first event at the listener in ${ms.toFixed(0)} ms\n`,
    )
    expect(rec.last?.instances.map((i) => i.port)).toEqual([8001, 8002])
  } finally {
    ac.abort()
    await provider.close()
  }
})

it('re-lists when etcd comes back with its data wiped (revisions start over)', async () => {
  const prefix = '/r3/'
  const writer = server.client()
  for (let i = 0; i < 20; i++)
    await putEventually(writer, `${prefix}svc/a`, wayfindValue('a', 8000 + i))
  await putEventually(writer, `${prefix}svc/b`, wayfindValue('b', 8100))
  const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
  const rec = new Recorder()
  const ac = new AbortController()
  try {
    provider.watch('svc', rec, { signal: ac.signal })
    const before = await rec.until(hasIds('a', 'b'))
    await server.kill('SIGKILL')
    await server.restart({ wipe: true })
    // The new store is at a revision far below what the watcher applied.
    const put = await putEventually(writer, `${prefix}svc/c`, wayfindValue('c', 8200)).then(() =>
      writer.get(`${prefix}svc/c`).exec(),
    )
    expect(BigInt(put.header.revision)).toBeLessThan(BigInt(before.revision))
    const after = await rec.until(hasIds('c'), 15_000, 'the wiped store to be re-listed')
    expect(after.instances[0]?.port).toBe(8200)
  } finally {
    ac.abort()
    await provider.close()
  }
})
