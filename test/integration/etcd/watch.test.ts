/**
 * The etcd provider's watch against a real etcd: list-then-watch, malformed values, compaction,
 * and the reconnect race of docs/design/etcd.md#why-not-etcd3s-watcher.
 */
import { EventEmitter } from 'node:events'
import type { Etcd3, IEvent } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode } from '../../../src/errors.js'
import { prefixEnd } from '../../../src/registry/etcd/client.js'
import { parseEtcdOptions } from '../../../src/registry/etcd/options.js'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import { runRevisionWatch } from '../../../src/registry/etcd/revision-watch.js'
import { createEtcdClient } from '../../../src/registry/etcd/client.js'
import { EtcdServer } from '../../support/etcd.js'
import { TcpProxy } from '../../support/tcp-proxy.js'
import { withDeadline } from '../../support/wait.js'
import { hasIds, Recorder, wayfindValue } from './helpers.js'

let server: EtcdServer
let writer: Etcd3

beforeAll(async () => {
  server = await EtcdServer.start()
  writer = server.client()
})

afterAll(async () => {
  await server.remove()
})

describe('etcd provider watch', () => {
  it('lists existing instances, then follows puts and deletes as full snapshots', async () => {
    const prefix = '/t1/'
    await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8001))
    await writer.put(`${prefix}svc-admin/x`).value(wayfindValue('x', 8009, { name: 'svc-admin' }))
    const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      expect(rec.snapshots).toHaveLength(0) // never synchronous
      const first = await rec.until(hasIds('a'))
      expect(first.instances[0]).toMatchObject({
        id: 'a',
        key: `${prefix}svc/a`,
        service: 'svc',
        host: '127.0.0.1',
        port: 8001,
      })
      await writer.put(`${prefix}svc/b`).value(wayfindValue('b', 8002))
      await rec.until(hasIds('a', 'b'))
      await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8011))
      const moved = await rec.until((s) => s.instances.find((i) => i.id === 'a')?.port === 8011)
      expect(moved.instances).toHaveLength(2)
      await writer.delete().key(`${prefix}svc/b`)
      const afterDelete = await rec.until(hasIds('a'))
      // Revisions are decimal strings that never go backwards.
      const revs = rec.snapshots.map((s) => BigInt(s.revision))
      for (let i = 1; i < revs.length; i++) expect(revs[i]! >= revs[i - 1]!).toBe(true)
      expect(afterDelete.revision).toMatch(/^\d+$/)
      // svc-admin shares the "svc" prefix without the slash: never part of svc.
      expect(rec.snapshots.flatMap((s) => s.instances).some((i) => i.id === 'x')).toBe(false)
      await writer.delete().key(`${prefix}svc/a`)
      const empty = await rec.until((s) => s.instances.length === 0)
      expect(empty.instances).toEqual([])
      expect(rec.errors).toEqual([])
    } finally {
      ac.abort()
      await provider.close()
    }
  })

  it('lists a large service page by page at one revision', async () => {
    const prefix = '/t5/'
    const ids = Array.from({ length: 7 }, (_, i) => `i${String(i)}`)
    for (const [n, id] of ids.entries())
      await writer.put(`${prefix}svc/${id}`).value(wayfindValue(id, 8000 + n))
    const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix, pageSize: 2 }))
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      const first = await rec.until(() => true)
      expect(first.instances.map((i) => i.id)).toEqual(ids)
      expect(first.instances.map((i) => i.port)).toEqual(ids.map((_, n) => 8000 + n))
      await writer.put(`${prefix}svc/i9`).value(wayfindValue('i9', 8009))
      await rec.until(hasIds(...ids, 'i9'))
    } finally {
      ac.abort()
      await provider.close()
    }
  })

  it("pins every page of a listing to the first page's revision; writes between pages arrive as events", async () => {
    const prefix = '/t6/'
    const key = Buffer.from(`${prefix}svc/`)
    for (const id of ['a', 'b', 'c', 'd', 'e']) await writer.put(`${prefix}svc/${id}`).value('1')
    const options = parseEtcdOptions({ hosts: server.host, prefix, pageSize: 2 })
    const client = createEtcdClient(options)
    const rangePage = client.rangePage.bind(client)
    let pages = 0
    // Between the first and the second page, someone adds "b2" and deletes "e".
    client.rangePage = async (req) => {
      const res = await rangePage(req)
      if (++pages === 1) {
        await writer.put(`${prefix}svc/b2`).value('1')
        await writer.delete().key(`${prefix}svc/e`)
      }
      return res
    }
    const listed: string[][] = []
    const events: string[] = []
    const ac = new AbortController()
    const done = new EventEmitter()
    const loop = runRevisionWatch(
      client,
      options,
      { key, end: prefixEnd(key) },
      {
        onList: (kvs) => {
          listed.push(kvs.map((k) => k.key.toString().slice(key.length)))
        },
        onEvents: (evs) => {
          for (const e of evs) events.push(`${e.type}:${e.kv.key.toString().slice(key.length)}`)
          if (events.length >= 2) done.emit('done')
        },
        onError: () => {},
      },
      ac.signal,
      'paging test',
    )
    try {
      await withDeadline(new Promise((r) => done.once('done', r)), 10_000, 'the two events')
      // Page 1 holds pageSize keys; page 2 grows to take the rest (list-pages.test.ts).
      expect(pages).toBe(2)
      expect(listed).toEqual([['a', 'b', 'c', 'd', 'e']])
      expect(events).toEqual(['Put:b2', 'Delete:e'])
    } finally {
      ac.abort()
      await loop
      client.close()
    }
  })

  it('close() during an outage is prompt, and nothing reaches the listener afterwards', async () => {
    const prefix = '/t7/'
    const proxy = await TcpProxy.start({ port: server.clientPort })
    const provider = new EtcdProvider(
      parseEtcdOptions({ hosts: proxy.host, prefix, backoff: { initialMs: 10, maxMs: 50 } }),
    )
    const rec = new Recorder()
    try {
      provider.watch('svc', rec, { signal: new AbortController().signal })
      await rec.until(() => true)
      proxy.cut()
      await rec.untilError(() => true)
      // Bounded: requestTimeoutMs (5 s) at worst, for a unary call in flight.
      await withDeadline(provider.close(), 6_000, 'close() during an outage')
      const calls = rec.snapshots.length + rec.errors.length
      proxy.heal()
      // A fresh watcher proves etcd is reachable again and time has passed for stray retries.
      const control = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
      const seen = new Recorder()
      control.watch('svc', seen, { signal: new AbortController().signal })
      await writer.put(`${prefix}svc/x`).value(wayfindValue('x', 8001))
      await seen.until(hasIds('x'))
      await control.close()
      expect(rec.snapshots.length + rec.errors.length).toBe(calls)
      expect(() => {
        provider.watch('svc', rec, { signal: new AbortController().signal })
      }).toThrow(/after close/)
    } finally {
      await proxy.close()
    }
  })

  it('keeps the last good value of a key whose new value is malformed, and reports the key', async () => {
    const prefix = '/t2/'
    await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8001))
    await writer.put(`${prefix}svc/bad`).value('not an address')
    const provider = new EtcdProvider(parseEtcdOptions({ hosts: server.host, prefix }))
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      await rec.until(hasIds('a'))
      const listed = await rec.untilError((e) => e.code === ErrorCode.MALFORMED_INSTANCE)
      expect(listed).toMatchObject({ key: `${prefix}svc/bad` })
      expect(listed.message).toContain(`${prefix}svc/bad`)

      const before = rec.errors.length
      await writer.put(`${prefix}svc/a`).value('{"address": 12}')
      const err = await rec.untilError(
        (e) =>
          e.code === ErrorCode.MALFORMED_INSTANCE &&
          (e as unknown as { key: string }).key === `${prefix}svc/a`,
        10_000,
        before,
      )
      expect(err.message).toContain('last good value')
      // Still served with its old port, then replaced by the next good value.
      expect(rec.last?.instances.map((i) => [i.id, i.port])).toEqual([['a', 8001]])
      await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8002))
      await rec.until((s) => s.instances.length === 1 && s.instances[0]?.port === 8002)
    } finally {
      ac.abort()
      await provider.close()
    }
  })

  it('re-lists after compaction past its revision: removals emitted, then the watch continues', async () => {
    const prefix = '/t3/'
    const proxy = await TcpProxy.start({ port: server.clientPort })
    await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8001))
    await writer.put(`${prefix}svc/b`).value(wayfindValue('b', 8002))
    const relists: string[] = []
    const provider = EtcdProvider.withHooks(
      { hosts: proxy.host, prefix, backoff: { maxMs: 200 } },
      {
        onRelist: (_s, why) => {
          relists.push(why)
        },
      },
    )
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      await rec.until(hasIds('a', 'b'))
      proxy.cut()
      // While the watcher is away: b goes, c comes, and history is compacted away.
      await writer.delete().key(`${prefix}svc/b`)
      await writer.put(`${prefix}svc/c`).value(wayfindValue('c', 8003))
      const head = await writer.put(`${prefix}other`).value('x')
      await writer.kv.compact({ revision: head.header.revision, physical: true })
      proxy.heal()
      const relisted = await rec.until(hasIds('a', 'c'), 15_000)
      expect(relisted.instances.map((i) => i.id)).not.toContain('b')
      expect(relists).toEqual([`compacted at ${head.header.revision}`])
      await writer.put(`${prefix}svc/d`).value(wayfindValue('d', 8004))
      await rec.until(hasIds('a', 'c', 'd'))
    } finally {
      ac.abort()
      await provider.close()
      await proxy.close()
    }
  })

  it('a re-listing in which every value is malformed keeps the last good set, with one error', async () => {
    const prefix = '/t3b/'
    const proxy = await TcpProxy.start({ port: server.clientPort })
    await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8001))
    await writer.put(`${prefix}svc/b`).value(wayfindValue('b', 8002))
    const provider = EtcdProvider.withHooks(
      { hosts: proxy.host, prefix, backoff: { maxMs: 200 } },
      {},
    )
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      await rec.until(hasIds('a', 'b'))
      proxy.cut()
      // While the watcher is away, a writer replaces every instance with unreadable values.
      await writer.delete().key(`${prefix}svc/a`)
      await writer.delete().key(`${prefix}svc/b`)
      await writer.put(`${prefix}svc/c`).value('not an address')
      await writer.put(`${prefix}svc/d`).value('{"address": 12}')
      const head = await writer.put(`${prefix}other`).value('x')
      await writer.kv.compact({ revision: head.header.revision, physical: true })
      proxy.heal()
      const error = await rec.untilError((e) => e.code === ErrorCode.MALFORMED_INSTANCE, 15_000)
      expect(error).toMatchObject({ service: 'svc', entries: 2, key: `${prefix}svc/c` })
      expect(error.message).toMatch(/last good set keeps serving/)
      expect(rec.errors.filter((e) => e.code === ErrorCode.MALFORMED_INSTANCE)).toHaveLength(1)
      expect(rec.snapshots.every((s) => s.instances.length > 0)).toBe(true)
      // Readable values apply again at once.
      await writer.put(`${prefix}svc/c`).value(wayfindValue('c', 8003))
      await rec.until((s) => s.instances.some((i) => i.id === 'c'))
    } finally {
      ac.abort()
      await provider.close()
      await proxy.close()
    }
  })

  it('refuses more keys than limits.maxInstances, keeping the last good set until back under it', async () => {
    const prefix = '/t3c/'
    await writer.put(`${prefix}svc/a`).value(wayfindValue('a', 8001))
    await writer.put(`${prefix}svc/b`).value(wayfindValue('b', 8002))
    const provider = new EtcdProvider(
      parseEtcdOptions({ hosts: server.host, prefix, limits: { maxInstances: 2 } }),
    )
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('svc', rec, { signal: ac.signal })
      await rec.until(hasIds('a', 'b'))
      await writer.put(`${prefix}svc/c`).value(wayfindValue('c', 8003))
      const error = await rec.untilError((e) => e.code === ErrorCode.LIMIT_EXCEEDED)
      expect(error).toMatchObject({ limit: 'limits.maxInstances', max: 2, service: 'svc' })
      await writer.delete().key(`${prefix}svc/a`)
      await rec.until(hasIds('b', 'c'))
      expect(rec.snapshots.every((s) => s.instances.length <= 2)).toBe(true)
    } finally {
      ac.abort()
      await provider.close()
    }
  })

  it('loses nothing when the connection drops again right after a resume', async () => {
    const prefix = '/t4/'
    const key = Buffer.from(`${prefix}svc/`)
    const proxy = await TcpProxy.start({ port: server.clientPort })
    const options = parseEtcdOptions({
      hosts: proxy.host,
      prefix,
      backoff: { initialMs: 20, maxMs: 200 },
    })
    const client = createEtcdClient(options)
    const seen: { key: string; rev: bigint }[] = []
    const ac = new AbortController()
    let onWatching: (() => void) | undefined
    const events = new EventEmitter()
    const loop = runRevisionWatch(
      client,
      options,
      { key, end: prefixEnd(key) },
      {
        onList: () => {
          events.emit('listed')
        },
        onEvents: (evs: readonly IEvent[]) => {
          for (const e of evs)
            seen.push({ key: e.kv.key.toString(), rev: BigInt(e.kv.mod_revision) })
          events.emit('events')
        },
        onError: () => {},
        onWatching: () => {
          onWatching?.()
          events.emit('watching')
        },
      },
      ac.signal,
      'race test',
    )
    try {
      await withDeadline(new Promise((r) => events.once('watching', r)), 10_000, 'first watch')
      const before = await writer.put(`${prefix}svc/before`).value('1')
      proxy.cut()
      const gapRevs: bigint[] = []
      for (const k of ['gap1', 'gap2', 'gap3'])
        gapRevs.push(BigInt((await writer.put(`${prefix}svc/${k}`).value('1')).header.revision))
      // The moment etcd confirms the resumed watch, before it replays the gap: cut again.
      let secondCut = false
      onWatching = () => {
        if (secondCut) return
        secondCut = true
        proxy.cut()
        proxy.once('refused', () => {
          proxy.heal()
        })
      }
      proxy.heal()
      const after = await writer.put(`${prefix}svc/after`).value('1')
      const want = [BigInt(before.header.revision), ...gapRevs, BigInt(after.header.revision)]
      await withDeadline(
        (async () => {
          while (seen.length < want.length) await new Promise((r) => events.once('events', r))
        })(),
        15_000,
        'every event',
      )
      expect(secondCut).toBe(true)
      expect(seen.map((s) => s.rev)).toEqual(want)
      expect(seen.map((s) => s.key)).toEqual(
        ['before', 'gap1', 'gap2', 'gap3', 'after'].map((k) => `${prefix}svc/${k}`),
      )
    } finally {
      ac.abort()
      await loop
      client.close()
      await proxy.close()
    }
  })
})
