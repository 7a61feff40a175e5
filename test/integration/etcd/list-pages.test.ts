/**
 * Listing a large service: the first Range page holds `pageSize` keys, later pages grow to about
 * 1 MiB at the size the previous page averaged, so a listing costs a few round trips, not one
 * per `pageSize` keys, and no page comes near grpc-js' 4 MiB receive limit.
 */
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createEtcdClient, prefixEnd } from '../../../src/registry/etcd/client.js'
import { parseEtcdOptions } from '../../../src/registry/etcd/options.js'
import { runRevisionWatch } from '../../../src/registry/etcd/revision-watch.js'
import { EtcdServer } from '../../support/etcd.js'
import { withDeadline } from '../../support/wait.js'

let server: EtcdServer
let writer: Etcd3

beforeAll(async () => {
  server = await EtcdServer.start()
  writer = server.client()
})

afterAll(async () => {
  await server.remove()
})

/** Lists `<prefix>svc/` once; returns the keys listed and the `limit` of every Range call. */
async function listOnce(
  prefix: string,
  pageSize: number,
): Promise<{ keys: number; limits: number[] }> {
  const key = Buffer.from(`${prefix}svc/`)
  const options = parseEtcdOptions({ hosts: server.host, prefix, pageSize })
  const client = createEtcdClient(options)
  const limits: number[] = []
  const rangePage = client.rangePage.bind(client)
  client.rangePage = (req) => {
    limits.push(req.limit)
    return rangePage(req)
  }
  const ac = new AbortController()
  let resolve!: (n: number) => void
  const listed = new Promise<number>((r) => (resolve = r))
  const loop = runRevisionWatch(
    client,
    options,
    { key, end: prefixEnd(key) },
    { onList: (kvs) => resolve(kvs.length), onEvents: () => {}, onError: () => {} },
    ac.signal,
    'page test',
  )
  try {
    return { keys: await withDeadline(listed, 10_000, 'the listing'), limits }
  } finally {
    ac.abort()
    await loop
    client.close()
  }
}

it('lists 300 small keys in two pages: pageSize keys, then the rest', async () => {
  const prefix = '/p1/'
  await Promise.all(
    Array.from({ length: 300 }, (_, i) =>
      writer.put(`${prefix}svc/i${String(i)}`).value('10.0.0.1:80'),
    ),
  )
  const { keys, limits } = await listOnce(prefix, 10)
  expect(keys).toBe(300)
  expect(limits).toHaveLength(2)
  expect(limits[0]).toBe(10)
  expect(limits[1]).toBeGreaterThanOrEqual(290)
})

it('keeps pages of large values near 1 MiB', async () => {
  const prefix = '/p2/'
  const value = `10.0.0.1:80${' '.repeat(200_000)}`
  for (let i = 0; i < 12; i++) await writer.put(`${prefix}svc/i${String(i)}`).value(value)
  const { keys, limits } = await listOnce(prefix, 1)
  expect(keys).toBe(12)
  // 1 key, then 5 per page (1 MiB / ~200 kB); the last page holds the 1 key left.
  expect(limits).toEqual([1, 5, 5, 5])
})
