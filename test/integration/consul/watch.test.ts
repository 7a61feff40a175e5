import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ErrorCode } from '../../../src/errors.js'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { eventually } from '../../support/wait.js'
import { recorder, summary } from './helpers.js'

let server: ConsulTestServer
let registry: ConsulRegistry
let stop: AbortController

beforeEach(async () => {
  server = await startConsulServer()
  server.addNode('node-2', { address: '10.0.0.2' })
  stop = new AbortController()
})

afterEach(async () => {
  stop.abort()
  await registry.close()
  await server.close()
})

function healthRequests(service: string): number {
  return server.stats.requests.filter((r) => r.path === `/v1/health/service/${service}`).length
}

describe('consul watch', () => {
  it('delivers the first answer, then wakes on a change within one round trip', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    registry = consul({ url: server.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    const first = await rec.snapshot()
    expect(summary(first)).toEqual(['o1@10.0.0.2:8080/passing'])
    await server.waitForBlockingQueries(1)
    const before = healthRequests('orders')
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'o2',
      address: '10.9.9.9',
      port: 9090,
    })
    const second = await rec.snapshot((s) => s.instances.length === 2)
    expect(summary(second)).toEqual(['o1@10.0.0.2:8080/passing', 'o2@10.9.9.9:9090/passing'])
    // The parked query answered the change: no extra request was needed to see it.
    expect(healthRequests('orders') - before).toBe(0)
    expect(BigInt(second.revision)).toBeGreaterThan(BigInt(first.revision))
    const blocking = server.stats.requests.filter((r) => r.query.has('index'))
    expect(blocking.length).toBeGreaterThan(0)
    for (const r of blocking) {
      expect(r.query.get('index')).not.toBe('0')
      expect(r.query.get('wait')).toBe('5m')
      expect(r.query.get('passing')).toBe('1')
    }
  })

  it('emits nothing on an index-only bump', async () => {
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'o1',
      port: 8080,
      checks: [{ status: 'passing', output: 'v1' }],
    })
    // A critical instance is filtered out by ?passing: changes to it bump the index only.
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'sick',
      port: 8081,
      checks: [{ status: 'critical' }],
    })
    registry = consul({ url: server.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)
    const woke = new Promise((resolve) => {
      server.events.once('unblocked', resolve)
    })
    server.setCheck('node-2', 'service:sick', 'critical', {
      serviceId: 'sick',
      output: 'still down',
    })
    server.setCheck('node-2', 'service:o1', 'passing', { serviceId: 'o1', output: 'v2' })
    await woke
    // The watch went back to blocking with the new index and reported nothing.
    await server.waitForBlockingQueries(1)
    expect(rec.snapshots).toHaveLength(1)
    server.setCheck('node-2', 'service:sick', 'passing', { serviceId: 'sick' })
    const healed = await rec.snapshot((s) => s.instances.length === 2)
    expect(summary(healed)).toEqual(['o1@10.0.0.2:8080/passing', 'sick@10.0.0.2:8081/passing'])
    expect(rec.snapshots).toHaveLength(2)
    expect(rec.errors).toEqual([])
  })

  it('recovers from an index regression without missing the next update', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    registry = consul({ url: server.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)
    const high = server.index
    server.faults.regressIndex(2)
    expect(server.index).toBeLessThan(high)
    // After the restore the watch must block on the new, lower index (not the stale high one).
    await server.waitForBlockingQueries(1)
    server.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 8082 })
    const next = await rec.snapshot((s) => s.instances.length === 2)
    expect(summary(next)).toContain('o2@10.0.0.2:8082/passing')
    const indexes = server.stats.requests
      .filter((r) => r.path === '/v1/health/service/orders')
      .map((r) => r.query.get('index'))
    // index=0 (or none) is sent only for the first read and once right after the regression.
    expect(indexes.filter((i) => i === null || i === '0')).toHaveLength(2)
  })

  it('rides through 500 and 429 storms with the last good set, reporting each error', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    registry = consul({ url: server.url, backoff: { initialMs: 10, maxMs: 50 } })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)
    server.faults.failNext(4)
    server.faults.rateLimitNext(3)
    // The parked query answers this change; the requests after it meet the storm.
    server.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 8082 })
    await rec.snapshot((s) => s.instances.length === 2)
    await rec.error(() => true, { from: 6, timeoutMs: 10_000 })
    server.registerService({ node: 'node-2', name: 'orders', id: 'o3', port: 8083 })
    const settled = await rec.snapshot((s) => s.instances.length === 3, { timeoutMs: 10_000 })
    expect(summary(settled)).toHaveLength(3)
    expect(rec.errors.length).toBe(7)
    for (const e of rec.errors) {
      expect(e.code).toBe(ErrorCode.REGISTRY_UNAVAILABLE)
      expect(e.retryable).toBe(true)
    }
    expect(rec.errors.filter((e) => e.message.includes('429'))).toHaveLength(3)
    expect(rec.errors.filter((e) => e.message.includes('No cluster leader'))).toHaveLength(4)
    // Never an empty set in between: the last good one kept serving.
    expect(rec.snapshots.every((s) => s.instances.length > 0)).toBe(true)
  })

  it('keeps watching through dropped connections and a stalled agent', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    registry = consul({
      url: server.url,
      backoff: { initialMs: 10, maxMs: 50 },
      requestTimeoutMs: 300,
    })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)
    server.faults.stall = true
    server.faults.dropConnections()
    // The retry is a plain read, which the stalled agent never answers: our timeout fires.
    const timeout = await rec.error((e) => e.message.includes('did not answer'))
    expect(timeout.code).toBe(ErrorCode.REGISTRY_UNAVAILABLE)
    server.faults.stall = false
    server.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 8082 })
    await rec.snapshot((s) => s.instances.length === 2)
    expect(rec.snapshots.every((s) => s.instances.length > 0)).toBe(true)
  })

  it('uses Node.Address when Service.Address is empty, and the tagged address when asked', async () => {
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'o1',
      port: 8080,
      taggedAddresses: { wan_ipv4: { address: '203.0.113.5', port: 18080 } },
    })
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'o2',
      address: '10.7.7.7',
      port: 8081,
    })
    registry = consul({ url: server.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    expect(summary(await rec.snapshot())).toEqual([
      'o1@10.0.0.2:8080/passing',
      'o2@10.7.7.7:8081/passing',
    ])
    const wan = consul({ url: server.url, addressKind: 'wan_ipv4' })
    const rec2 = recorder()
    wan.watch('orders', rec2.listener, { signal: stop.signal })
    // o1 has a service wan_ipv4; o2 has none but its own Address, which wins over the node's.
    expect(summary(await rec2.snapshot())).toEqual([
      'o1@203.0.113.5:18080/passing',
      'o2@10.7.7.7:8081/passing',
    ])
    await wan.close()
  })

  it('keeps warning instances (status and warning weight) and drops critical ones without passingOnly', async () => {
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'ok',
      port: 1,
      weights: { passing: 10, warning: 2 },
    })
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'warn',
      port: 2,
      weights: { passing: 10, warning: 2 },
      checks: [{ status: 'warning' }],
    })
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'crit',
      port: 3,
      checks: [{ status: 'critical' }],
    })
    registry = consul({ url: server.url, passingOnly: false })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    const s = await rec.snapshot()
    expect(s.instances.map((i) => [i.id, i.status, i.weight])).toEqual([
      ['ok', 'passing', 10],
      ['warn', 'warning', 2],
    ])
    expect(server.stats.requests.some((r) => r.query.has('passing'))).toBe(false)
    // The node failing makes every instance critical; the empty set is confirmed, then applied.
    await server.waitForBlockingQueries(1)
    server.setNodeHealth('node-2', 'critical')
    const empty = await rec.snapshot((x) => x.instances.length === 0)
    expect(empty.instances).toEqual([])
  })

  it('sends tags, filter, dc and consistency as Consul expects', async () => {
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'a',
      port: 1,
      tags: ['v2', 'grpc'],
      meta: { zone: 'a' },
    })
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'b',
      port: 2,
      tags: ['v2'],
      meta: { zone: 'b' },
    })
    server.registerService({
      node: 'node-2',
      name: 'orders',
      id: 'c',
      port: 3,
      tags: ['v1', 'grpc'],
      meta: { zone: 'a' },
    })
    registry = consul({
      url: server.url,
      tags: ['v2', 'grpc'],
      filter: 'Service.Meta.zone == "a"',
      datacenter: 'dc1',
      consistency: 'stale',
    })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    expect((await rec.snapshot()).instances.map((i) => i.id)).toEqual(['a'])
    const q = server.stats.requests.find((r) => r.path === '/v1/health/service/orders')!.query
    expect(q.getAll('tag')).toEqual(['v2', 'grpc'])
    expect(q.get('filter')).toBe('Service.Meta.zone == "a"')
    expect(q.get('dc')).toBe('dc1')
    expect(q.has('stale')).toBe(true)
  })

  it('surfaces a 400 as an error and keeps retrying (slowly), never stopping silently', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    registry = consul({ url: server.url, backoff: { initialMs: 10, maxMs: 200 } })
    const rec = recorder()
    server.faults.failNext(2, 400, 'Invalid wait time')
    registry.watch('orders', rec.listener, { signal: stop.signal })
    const err = await rec.error()
    expect(err.message).toMatch(/400.*Invalid wait time/)
    await rec.error(() => true, { from: 1 })
    const s = await rec.snapshot()
    expect(summary(s)).toEqual(['o1@10.0.0.2:8080/passing'])
  })

  it('skips malformed entries with MALFORMED_INSTANCE once, keeping the others', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'good', port: 8080 })
    server.registerService({ node: 'node-2', name: 'orders', id: 'bad', port: 0 })
    registry = consul({ url: server.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    const s = await rec.snapshot()
    expect(s.instances.map((i) => i.id)).toEqual(['good'])
    const err = await rec.error()
    expect(err.code).toBe(ErrorCode.MALFORMED_INSTANCE)
    expect(err.message).toContain('node-2/bad')
    await server.waitForBlockingQueries(1)
    server.registerService({ node: 'node-2', name: 'orders', id: 'good2', port: 8081 })
    await rec.snapshot((x) => x.instances.length === 2)
    // The same malformed entry is not re-reported on every wake.
    expect(rec.errors).toHaveLength(1)
  })

  it('sends the token in the X-Consul-Token header only', async () => {
    await server.close()
    server = await startConsulServer({
      acl: {
        enabled: true,
        masterToken: 'root-token',
        tokens: { 'reader-secret': { write: false } },
      },
    })
    server.registerService({ name: 'orders', id: 'o1', port: 8080 })
    registry = consul({ url: server.url, env: { CONSUL_HTTP_TOKEN: 'reader-secret' } })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    expect((await rec.snapshot()).instances).toHaveLength(1)
    const reqs = server.stats.requests.filter((r) => r.path.startsWith('/v1/health/'))
    expect(reqs.length).toBeGreaterThan(0)
    for (const r of reqs) {
      expect(r.query.has('token')).toBe(false)
      expect(r.query.toString()).not.toContain('reader-secret')
      expect(r.headers['x-consul-token']).toBe('reader-secret')
    }
  })

  it('reports possibly ACL-filtered results when a token reads nothing', async () => {
    await server.close()
    server = await startConsulServer({
      acl: {
        enabled: true,
        masterToken: 'root-token',
        tokens: { 'no-read': { write: false, read: false } },
      },
    })
    server.registerService({ name: 'orders', id: 'o1', port: 8080 })
    registry = consul({ url: server.url, token: 'no-read' })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    expect((await rec.snapshot()).instances).toEqual([])
    const err = await rec.error()
    expect(err.message).toMatch(/ACL/)
    expect(err.message).not.toContain('no-read')
  })

  it('stops every request when the watch signal aborts and stays quiet after', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    registry = consul({ url: server.url })
    const rec = recorder()
    const watchStop = new AbortController()
    registry.watch('orders', rec.listener, { signal: watchStop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)
    const closed = new Promise((resolve) => {
      server.events.once('unblocked', resolve)
    })
    watchStop.abort()
    expect(await closed).toMatchObject({ reason: 'client-closed' })
    expect(registry.stats.watches).toBe(0)
    server.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 8081 })
    const count = server.stats.requests.length
    // A fresh watch on another service proves the loop would have had time to react.
    const other = recorder()
    registry.watch('orders', other.listener, { signal: stop.signal })
    await other.snapshot((s) => s.instances.length === 2)
    expect(rec.snapshots).toHaveLength(1)
    expect(server.stats.requests.length - count).toBe(1)
  })

  it('copes with an agent that sends X-Consul-Index: 0: blocks on 1, never on 0', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    server.faults.zeroIndex = true
    registry = consul({ url: server.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)
    server.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 8081 })
    await rec.snapshot((s) => s.instances.length === 2)
    await server.waitForBlockingQueries(1)
    const indexes = server.stats.requests
      .filter((r) => r.path === '/v1/health/service/orders')
      .map((r) => r.query.get('index'))
    expect(indexes).toEqual([null, '1', '1'])
  })

  it('paces an agent that never blocks with the token bucket, and reports nothing unchanged', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    server.faults.neverBlock = true
    const refillMs = 50
    registry = consul({ url: server.url, rateLimit: { burstCount: 2, refillMs } })
    const rec = recorder()
    const started = performance.now()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    const health = (): number =>
      server.stats.requests.filter((r) => r.path === '/v1/health/service/orders').length
    await eventually(() => (health() >= 8 ? true : undefined), { what: 'eight health queries' })
    // 8 requests: the first read and the one after it are free (the first answer is a change,
    // which costs no token), 2 come from the burst, the other 4 wait a refill each.
    expect(performance.now() - started).toBeGreaterThanOrEqual(4 * refillMs - 10)
    expect(rec.snapshots).toHaveLength(1)
    expect(rec.errors).toEqual([])
  })

  it('works with the streaming backend (no KnownLeader/LastContact) and a leaderless stale cluster', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    server.faults.streamingBackend = true
    server.faults.leaderless = true
    registry = consul({ url: server.url, consistency: 'stale' })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)
    server.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 8081 })
    await rec.snapshot((s) => s.instances.length === 2)
    expect(rec.errors).toEqual([])
  })

  it('close() ends every watch and socket, and nothing is reported after it', async () => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 8080 })
    server.registerService({ node: 'node-2', name: 'billing', id: 'b1', port: 8081 })
    registry = consul({ url: server.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    registry.watch('billing', rec.listener, { signal: stop.signal })
    await rec.snapshot((s) => s.service === 'billing')
    await rec.snapshot((s) => s.service === 'orders')
    await server.waitForBlockingQueries(2)
    await registry.close()
    expect(registry.stats).toMatchObject({ watches: 0, activePolls: 0 })
    // The agent sees both long polls end (their connections closed).
    await eventually(
      () =>
        server.stats.blockingQueries() === 0 && server.stats.openConnections() === 0
          ? true
          : undefined,
      { what: 'the agent to see the polls end' },
    )
    const requests = server.stats.requests.length
    server.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 8082 })
    expect(rec.snapshots).toHaveLength(2)
    expect(server.stats.requests.length).toBe(requests)
    expect(() => {
      registry.watch('orders', rec.listener, { signal: stop.signal })
    }).toThrow(/after close/)
    await registry.close() // idempotent
  })
})
