/**
 * Interop: instances written by Go frameworks in their own layouts
 * (docs/design/etcd.md#value-formats) resolve to the right addresses; malformed values are
 * reported by key and skipped. Also the client-level contract: `wf.resolve()` blocks until the
 * first registration, then resolves.
 */
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWayfind } from '../../../src/client.js'
import { MalformedInstanceError } from '../../../src/errors.js'
import { etcd, EtcdProvider } from '../../../src/registry/etcd/provider.js'
import { EtcdServer } from '../../support/etcd.js'
import { withDeadline } from '../../support/wait.js'
import { Recorder } from './helpers.js'

let server: EtcdServer
let writer: Etcd3

beforeAll(async () => {
  server = await EtcdServer.start()
  writer = server.client()
})

afterAll(async () => {
  await server.remove()
})

describe('etcd layouts', () => {
  it('reads plain host:port, Go etcd naming, Kratos, go-micro and wayfind values side by side', async () => {
    const p = '/microservices/calculator/'
    await writer.put(`${p}192.168.1.100:8080`).value('192.168.1.100:8080')
    await writer.put(`${p}7587869287406460932`).value('10.0.0.2:9000') // go-zero: lease id as key suffix
    await writer
      .put(`${p}10.0.0.3:8080`)
      .value(JSON.stringify({ Op: 0, Addr: '10.0.0.3:8080', Metadata: { zone: 'b' } }))
    await writer.put(`${p}6f1c-kratos`).value(
      JSON.stringify({
        id: '6f1c-kratos',
        name: 'calculator',
        version: 'v1.0.0',
        metadata: { color: 'blue' },
        endpoints: ['grpc://10.0.0.4:9000?isSecure=false', 'http://10.0.0.4:8000?isSecure=false'],
      }),
    )
    await writer.put(`${p}calculator-uuid1`).value(
      JSON.stringify({
        name: 'calculator',
        version: 'latest',
        metadata: null,
        endpoints: [],
        nodes: [
          { id: 'calculator-uuid1', address: '10.0.0.5:45123', metadata: { protocol: 'mucp' } },
        ],
      }),
    )
    await writer.put(`${p}wf-1`).value(
      JSON.stringify({
        id: 'wf-1',
        name: 'calculator',
        address: '10.0.0.6',
        port: 8081,
        tags: ['v2'],
        meta: { a: 'b' },
        weight: 3,
      }),
    )
    await writer.put(`${p}grpc-only`).value(
      JSON.stringify({
        id: 'grpc-only',
        name: 'calculator',
        endpoints: ['grpc://10.0.0.9:9000'],
      }),
    )
    await writer.put(`${p}garbage`).value('{"Addr": 42}')
    await writer
      .put(`${p}wrong-name`)
      .value(JSON.stringify({ id: 'w', name: 'other', address: '10.0.0.8', port: 1 }))

    const provider = EtcdProvider.withHooks({ hosts: server.host, prefix: '/microservices' }, {})
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('calculator', rec, { signal: ac.signal })
      const snap = await rec.until((s) => s.instances.length > 0)
      const byId = Object.fromEntries(
        snap.instances.map((i) => [
          i.id,
          { host: i.host, port: i.port, meta: i.meta, weight: i.weight, key: i.key, tags: i.tags },
        ]),
      )
      expect(byId).toEqual({
        '192.168.1.100:8080': {
          host: '192.168.1.100',
          port: 8080,
          meta: {},
          weight: 1,
          tags: [],
          key: `${p}192.168.1.100:8080`,
        },
        '7587869287406460932': {
          host: '10.0.0.2',
          port: 9000,
          meta: {},
          weight: 1,
          tags: [],
          key: `${p}7587869287406460932`,
        },
        '10.0.0.3:8080': {
          host: '10.0.0.3',
          port: 8080,
          meta: { zone: 'b' },
          weight: 1,
          tags: [],
          key: `${p}10.0.0.3:8080`,
        },
        '6f1c-kratos': {
          host: '10.0.0.4',
          port: 8000,
          meta: { color: 'blue', version: 'v1.0.0' },
          weight: 1,
          tags: [],
          key: `${p}6f1c-kratos`,
        },
        'calculator-uuid1': {
          host: '10.0.0.5',
          port: 45123,
          meta: { protocol: 'mucp', version: 'latest' },
          weight: 1,
          tags: [],
          key: `${p}calculator-uuid1`,
        },
        'wf-1': {
          host: '10.0.0.6',
          port: 8081,
          meta: { a: 'b' },
          weight: 3,
          tags: ['v2'],
          key: `${p}wf-1`,
        },
      })
      const malformed = rec.errors.filter(
        (e): e is MalformedInstanceError => e instanceof MalformedInstanceError,
      )
      // One error for the listing, listing every malformed value.
      expect(malformed).toHaveLength(1)
      expect(malformed[0]!.service).toBe('calculator')
      expect(malformed[0]!.details.map((d) => d.entry).sort()).toEqual([
        `${p}garbage`,
        `${p}grpc-only`,
        `${p}wrong-name`,
      ])
      expect(malformed[0]!.details.find((d) => d.entry.endsWith('grpc-only'))?.reason).toMatch(
        /no http:\/\/ endpoint/,
      )

      // The same through the client: wf.resolve() serves every foreign instance.
      const wf = createWayfind({ registry: etcd({ hosts: server.host, prefix: '/microservices' }) })
      try {
        const resolved = await wf.resolve('calculator', { timeoutMs: 10_000 })
        expect(resolved.map((i) => `${i.host}:${String(i.port)}`).sort()).toEqual([
          '10.0.0.2:9000',
          '10.0.0.3:8080',
          '10.0.0.4:8000',
          '10.0.0.5:45123',
          '10.0.0.6:8081',
          '192.168.1.100:8080',
        ])
      } finally {
        await wf.close()
      }
    } finally {
      ac.abort()
      await provider.close()
    }
  })
})

describe('go-zero keys (no prefix, lease id as suffix)', () => {
  it('reads <Key>/<leaseID> = host:port with prefix ""', async () => {
    const lease = writer.lease(30, { autoKeepAlive: false })
    const id = await lease.grant()
    await lease.put(`user.rpc/${id}`).value('10.1.1.1:8080')
    await writer.put('user.rpc.admin/1').value('10.9.9.9:1') // another service sharing the name prefix
    const provider = EtcdProvider.withHooks({ hosts: server.host, prefix: '' }, {})
    const rec = new Recorder()
    const ac = new AbortController()
    try {
      provider.watch('user.rpc', rec, { signal: ac.signal })
      const snap = await rec.until((s) => s.instances.length > 0)
      // The lease id stays a decimal string: int64 ids are not safe as JS numbers.
      expect(snap.instances.map((i) => [i.id, i.key, i.host, i.port])).toEqual([
        [id, `user.rpc/${id}`, '10.1.1.1', 8080],
      ])
      await lease.revoke()
      await rec.until((s) => s.instances.length === 0)
    } finally {
      ac.abort()
      await provider.close()
    }
  })
})

describe('client on etcd', () => {
  it('wf.resolve() blocks until the first registration, then resolves; deregister removes it', async () => {
    let watching: () => void = () => {}
    const watchLive = new Promise<void>((resolve) => {
      watching = resolve
    })
    const wf = createWayfind({
      registry: EtcdProvider.withHooks(
        { hosts: [`http://${server.host}`], prefix: '/c1/' },
        {
          onWatching: () => {
            watching()
          },
        },
      ),
    })
    const other = createWayfind({ registry: etcd({ hosts: server.host, prefix: '/c1/' }) })
    try {
      let settled = false
      const resolving = wf.resolve('orders', { timeoutMs: 20_000 }).finally(() => {
        settled = true
      })
      // The service was listed (empty) and its watch is live: still no instance, still waiting.
      await withDeadline(watchLive, 10_000, 'the watch')
      expect(settled).toBe(false)
      const reg = await other.register({
        name: 'orders',
        id: 'orders-1',
        address: '127.0.0.1',
        port: 8123,
        check: { ttlMs: 5_000 },
      })
      const instances = await resolving
      expect(instances.map((i) => [i.id, i.host, i.port])).toEqual([
        ['orders-1', '127.0.0.1', 8123],
      ])
      await reg.deregister()
      expect((await writer.get('/c1/orders/orders-1').exec()).kvs).toEqual([])
    } finally {
      await other.close()
      await wf.close()
    }
  })
})
