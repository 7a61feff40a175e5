/**
 * Blocking-query rules (docs/design/consul.md#blocking-queries): index/wait parsing, wake-ups,
 * timeouts with jitter, index never 0, per-service indexes, regression on snapshot restore,
 * prompt close.
 */
import { once } from 'node:events'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FakeClock } from '../../support/fake-clock.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { withDeadline } from '../../support/wait.js'
import { call, dispatcher } from './helpers.js'

afterAll(async () => {
  await dispatcher.close()
})

describe('blocking queries', () => {
  let consul: ConsulTestServer
  beforeEach(async () => {
    consul = await startConsulServer()
    consul.addNode('node-2', { address: '10.0.0.2' })
    consul.registerService({ node: 'node-2', name: 'payments', id: 'p1', port: 8080 })
  })
  afterEach(async () => {
    await consul.close()
  })

  it('answers at once without index, with index=0, and with an older index', async () => {
    const first = await call(consul, '/v1/health/service/payments')
    expect(first.status).toBe(200)
    expect(first.index).toBeGreaterThan(0)
    const zero = await call(consul, '/v1/health/service/payments?index=0&wait=10m')
    expect(zero.index).toBe(first.index)
    const older = await call(
      consul,
      `/v1/health/service/payments?index=${first.index! - 1}&wait=10m`,
    )
    expect(older.index).toBe(first.index)
    expect(consul.stats.blockingQueries()).toBe(0)
  })

  it('holds a query at the current index until a relevant write, then returns the new index', async () => {
    const first = await call(consul, '/v1/health/service/payments')
    const pending = call(consul, `/v1/health/service/payments?index=${first.index}&wait=30s`)
    await consul.waitForBlockingQueries(1)
    consul.registerService({ node: 'node-2', name: 'payments', id: 'p2', port: 8081 })
    const woke = await withDeadline(pending, 5_000, 'the blocked query to wake')
    expect(woke.status).toBe(200)
    expect(woke.index).toBeGreaterThan(first.index!)
    expect(woke.json<{ Service: { ID: string } }[]>().map((e) => e.Service.ID)).toEqual([
      'p1',
      'p2',
    ])
  })

  it('is not woken by writes to other services (per-service index, since Consul 1.0.7)', async () => {
    const first = await call(consul, '/v1/health/service/payments')
    const unblocked: string[] = []
    consul.events.on('unblocked', (e: { reason: string }) => unblocked.push(e.reason))
    const pending = call(consul, `/v1/health/service/payments?index=${first.index}&wait=30s`)
    await consul.waitForBlockingQueries(1)
    consul.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 9000 })
    consul.setCheck('node-2', 'service:o1', 'critical', { serviceId: 'o1' })
    expect(consul.index).toBeGreaterThan(first.index!)
    expect(consul.stats.blockingQueries()).toBe(1)
    expect(unblocked).toEqual([])
    // A service check of payments does wake it.
    consul.setCheck('node-2', 'service:p1', 'warning', { serviceId: 'p1' })
    const woke = await withDeadline(pending, 5_000, 'wake on own check')
    expect(woke.index).toBe(consul.index)
    expect(unblocked).toEqual(['change'])
  })

  it('is woken by a node-level check (serfHealth) of a node the service runs on', async () => {
    const first = await call(consul, '/v1/health/service/payments')
    const pending = call(consul, `/v1/health/service/payments?index=${first.index}&wait=30s`)
    await consul.waitForBlockingQueries(1)
    consul.setNodeHealth('node-2', 'critical')
    const woke = await withDeadline(pending, 5_000, 'wake on serfHealth')
    const checks = woke.json<{ Checks: { CheckID: string; Status: string }[] }[]>()[0]!.Checks
    expect(checks.find((c) => c.CheckID === 'serfHealth')?.Status).toBe('critical')
  })

  it('does not move the index for a write that changes nothing', () => {
    const before = consul.index
    consul.registerService({ node: 'node-2', name: 'payments', id: 'p1', port: 8080 })
    consul.setNodeHealth('node-2', 'passing')
    expect(consul.index).toBe(before)
  })

  it('blocks on a missing service until it appears, and reports 200 [] meanwhile', async () => {
    const first = await call(consul, '/v1/health/service/ghost')
    expect(first.status).toBe(200)
    expect(first.json()).toEqual([])
    expect(first.index).toBeGreaterThan(0)
    const pending = call(consul, `/v1/health/service/ghost?index=${first.index}&wait=30s`)
    await consul.waitForBlockingQueries(1)
    consul.registerService({ node: 'node-2', name: 'ghost', id: 'g1', port: 1 })
    const woke = await withDeadline(pending, 5_000, 'wake on appearance')
    expect(woke.json<unknown[]>()).toHaveLength(1)
    expect(woke.index).toBeGreaterThan(first.index!)
  })

  it('a query on a missing service also returns when any other service goes extinct (hashicorp/consul#4810)', async () => {
    consul.registerService({ node: 'node-2', name: 'orders', id: 'o1', port: 9000 })
    consul.removeService('node-2', 'o1')
    const first = await call(consul, '/v1/health/service/ghost')
    const pending = call(consul, `/v1/health/service/ghost?index=${first.index}&wait=30s`)
    await consul.waitForBlockingQueries(1)
    // Not on an ordinary write to another service...
    consul.registerService({ node: 'node-2', name: 'orders', id: 'o2', port: 9001 })
    expect(consul.stats.blockingQueries()).toBe(1)
    // ...but on its extinction: the answer is unchanged, only the index moved.
    consul.removeService('node-2', 'o2')
    const woke = await withDeadline(pending, 5_000, 'wake on another extinction')
    expect(woke.json()).toEqual([])
    expect(woke.index).toBeGreaterThan(first.index!)
  })

  it('before any extinction, a query on a missing service returns on any write', async () => {
    const first = await call(consul, '/v1/health/service/ghost')
    const pending = call(consul, `/v1/health/service/ghost?index=${first.index}&wait=30s`)
    await consul.waitForBlockingQueries(1)
    consul.setNodeHealth('node-2', 'warning')
    const woke = await withDeadline(pending, 5_000, 'wake on an unrelated write')
    expect(woke.json()).toEqual([])
    expect(woke.index).toBeGreaterThan(first.index!)
  })

  it('returns when the last instance goes away, with an index that moved', async () => {
    const first = await call(consul, '/v1/health/service/payments')
    const pending = call(consul, `/v1/health/service/payments?index=${first.index}&wait=30s`)
    await consul.waitForBlockingQueries(1)
    expect(consul.removeService('node-2', 'p1')).toBe(true)
    const woke = await withDeadline(pending, 5_000, 'wake on extinction')
    expect(woke.json()).toEqual([])
    expect(woke.index).toBeGreaterThan(first.index!)
  })

  it("rejects bad wait and index values with Consul's 400 texts", async () => {
    for (const wait of ['10', 'abc', '5x', '-']) {
      const r = await call(consul, `/v1/health/service/payments?index=1&wait=${wait}`)
      expect([r.status, r.text]).toEqual([400, 'Invalid wait time'])
    }
    for (const index of ['-1', 'abc', '1.5', '18446744073709551616']) {
      const r = await call(consul, `/v1/health/service/payments?index=${index}`)
      expect([r.status, r.text]).toEqual([400, 'Invalid index'])
    }
    const maxStale = await call(consul, '/v1/health/service/payments?max_stale=5')
    expect([maxStale.status, maxStale.text]).toEqual([400, 'Invalid max_stale value "5"'])
    const staleByMax = await call(consul, '/v1/health/service/payments?max_stale=5s&consistent')
    expect(staleByMax.status).toBe(400)
    const cached = await call(consul, '/v1/health/service/payments?cached&consistent')
    expect([cached.status, cached.text]).toEqual([
      400,
      'Cannot specify ?cached with ?consistent, conflicting semantics.',
    ])
    const both = await call(consul, '/v1/health/service/payments?stale&consistent')
    expect([both.status, both.text]).toEqual([
      400,
      'Cannot specify ?stale with ?consistent, conflicting semantics.',
    ])
  })

  it('sends the query meta headers, with the consistency mode asked for', async () => {
    const r = await call(consul, '/v1/health/service/payments?stale')
    expect(r.headers['x-consul-knownleader']).toBe('true')
    expect(r.headers['x-consul-lastcontact']).toBe('0')
    expect(r.headers['x-consul-effective-consistency']).toBe('stale')
    expect(r.headers['x-consul-query-backend']).toBe('blocking-query')
    expect(r.headers['content-type']).toBe('application/json')
    const c = await call(consul, '/v1/health/service/payments?consistent')
    expect(c.headers['x-consul-effective-consistency']).toBe('consistent')
    const m = await call(consul, '/v1/health/service/payments?max_stale=10s&cached')
    expect(m.headers['x-consul-effective-consistency']).toBe('stale')
    expect(m.headers['x-cache']).toBe('MISS')
    expect(m.headers.age).toBeUndefined()
  })

  it('ends parked blocking queries promptly on close()', async () => {
    const first = await call(consul, '/v1/health/service/payments')
    const pending = call(consul, `/v1/health/service/payments?index=${first.index}&wait=10m`).then(
      () => 'answered',
      () => 'connection closed',
    )
    await consul.waitForBlockingQueries(1)
    await withDeadline(consul.close(), 2_000, 'close()')
    expect(await withDeadline(pending, 2_000, 'the client to see the close')).toBe(
      'connection closed',
    )
    expect(consul.stats.openConnections()).toBe(0)
  })

  it('frees the parked query when the client goes away', async () => {
    const first = await call(consul, '/v1/health/service/payments')
    const ac = new AbortController()
    const pending = call(consul, `/v1/health/service/payments?index=${first.index}&wait=10m`, {
      signal: ac.signal,
    }).catch(() => 'aborted')
    await consul.waitForBlockingQueries(1)
    const ended = once(consul.events, 'unblocked')
    ac.abort()
    expect(await pending).toBe('aborted')
    const [info] = (await withDeadline(ended, 2_000, 'unblocked event')) as [{ reason: string }]
    expect(info.reason).toBe('client-closed')
    expect(consul.stats.blockingQueries()).toBe(0)
  })
})

describe('blocking query timeouts (fake clock)', () => {
  let consul: ConsulTestServer
  let clock: FakeClock
  afterEach(async () => {
    await consul.close()
  })

  async function start(
    random: () => number,
    extra: { maxWaitMs?: number; defaultWaitMs?: number } = {},
  ): Promise<number> {
    clock = new FakeClock()
    consul = await startConsulServer({ clock, random, ...extra })
    consul.registerService({ name: 'web', port: 80 })
    return (await call(consul, '/v1/health/service/web')).index!
  }

  async function blockedTimeout(
    path: string,
  ): Promise<{ timeoutMs: number; reply: Promise<Awaited<ReturnType<typeof call>>> }> {
    const started = once(consul.events, 'blocking')
    const reply = call(consul, path)
    const [info] = (await withDeadline(started, 5_000, 'blocking event')) as [{ timeoutMs: number }]
    return { timeoutMs: info.timeoutMs, reply }
  }

  it('times out after wait plus up to wait/16 jitter, answering 200 with the same index', async () => {
    const index = await start(() => 0.5)
    const { timeoutMs, reply } = await blockedTimeout(
      `/v1/health/service/web?index=${index}&wait=16s`,
    )
    expect(timeoutMs).toBe(16_000 + 0.5 * 1_000)
    clock.advance(16_499)
    expect(consul.stats.blockingQueries()).toBe(1)
    clock.advance(1)
    const r = await withDeadline(reply, 5_000, 'timeout answer')
    expect(r.status).toBe(200)
    expect(r.index).toBe(index)
    expect(r.json<unknown[]>()).toHaveLength(1)
  })

  it('never adds more than wait/16', async () => {
    const index = await start(() => 0.999999)
    const { timeoutMs, reply } = await blockedTimeout(
      `/v1/health/service/web?index=${index}&wait=1m`,
    )
    expect(timeoutMs).toBeGreaterThanOrEqual(60_000)
    expect(timeoutMs).toBeLessThan((60_000 * 17) / 16)
    clock.advance(timeoutMs)
    expect((await reply).index).toBe(index)
  })

  it('clamps wait to max_query_time without an error, and uses default_query_time when wait is absent', async () => {
    const index = await start(() => 0, { maxWaitMs: 600_000, defaultWaitMs: 300_000 })
    const a = await blockedTimeout(`/v1/health/service/web?index=${index}&wait=20m`)
    expect(a.timeoutMs).toBe(600_000)
    const b = await blockedTimeout(`/v1/health/service/web?index=${index}`)
    expect(b.timeoutMs).toBe(300_000)
    clock.advance(600_000)
    expect((await a.reply).status).toBe(200)
    expect((await b.reply).status).toBe(200)
  })

  it('keeps blocking a client whose index is ahead of the server, then answers with the lower index', async () => {
    const index = await start(() => 0)
    const { reply } = await blockedTimeout(`/v1/health/service/web?index=${index + 1000}&wait=10s`)
    expect(consul.stats.blockingQueries()).toBe(1)
    clock.advance(10_000)
    const r = await reply
    expect(r.index).toBe(index)
  })
})

describe('index sanity', () => {
  let consul: ConsulTestServer
  afterEach(async () => {
    await consul.close()
  })

  it('grows with every write and is never 0, even after a regression to 0', async () => {
    consul = await startConsulServer()
    const seen: number[] = []
    for (let i = 0; i < 5; i++) {
      consul.registerService({ name: 'svc', id: `s${i}`, port: 1000 + i })
      seen.push((await call(consul, '/v1/health/service/svc')).index!)
    }
    expect([...seen].sort((a, b) => a - b)).toEqual(seen)
    expect(new Set(seen).size).toBe(5)
    consul.faults.regressIndex(0)
    const r = await call(consul, '/v1/health/service/svc')
    expect(r.index).toBe(1)
  })

  it('regression (snapshot restore) wakes parked queries at once with the lower index', async () => {
    consul = await startConsulServer()
    for (let i = 0; i < 20; i++)
      consul.registerService({ name: 'svc', id: `s${i}`, port: 1000 + i })
    const before = (await call(consul, '/v1/health/service/svc')).index!
    expect(before).toBeGreaterThan(10)
    const pending = call(consul, `/v1/health/service/svc?index=${before}&wait=10m`)
    await consul.waitForBlockingQueries(1)
    const ended = once(consul.events, 'unblocked')
    consul.faults.regressIndex(5)
    const r = await withDeadline(pending, 5_000, 'the abandoned query')
    expect(r.status).toBe(200)
    expect(r.index).toBe(5)
    expect(((await ended) as [{ reason: string }])[0].reason).toBe('abandon')
    // Writes continue from the restored index.
    consul.registerService({ name: 'svc', id: 'after', port: 1 })
    expect((await call(consul, '/v1/health/service/svc')).index).toBe(6)
  })

  it('can act as an old or buggy agent that reports X-Consul-Index: 0', async () => {
    consul = await startConsulServer()
    consul.registerService({ name: 'x', port: 1 })
    consul.faults.zeroIndex = true
    expect((await call(consul, '/v1/health/service/x')).headers['x-consul-index']).toBe('0')
    // Its state index is 0 as far as clients can tell: index=1 is current and blocks until a write.
    const pending = call(consul, '/v1/health/service/x?index=1&wait=30s')
    await consul.waitForBlockingQueries(1)
    consul.registerService({ name: 'x', id: 'x2', port: 2 })
    const r = await withDeadline(pending, 5_000, 'the write to wake it')
    expect(r.json<unknown[]>()).toHaveLength(2)
    expect(r.headers['x-consul-index']).toBe('0')
  })

  it('neverBlock answers blocking queries at once with the same index', async () => {
    consul = await startConsulServer()
    consul.registerService({ name: 'x', port: 1 })
    const first = await call(consul, '/v1/health/service/x')
    consul.faults.neverBlock = true
    const r = await withDeadline(
      call(consul, `/v1/health/service/x?index=${first.index}&wait=10m`),
      2_000,
      'an immediate answer',
    )
    expect(r.index).toBe(first.index)
    expect(consul.stats.blockingQueries()).toBe(0)
  })

  it('waitForBlockingQueries(0) resolves once clients have gone away', async () => {
    consul = await startConsulServer()
    const ac = new AbortController()
    const first = await call(consul, '/v1/health/service/x')
    const pending = [0, 1].map(() =>
      call(consul, `/v1/health/service/x?index=${first.index}&wait=10m`, {
        signal: ac.signal,
      }).catch(() => 'aborted'),
    )
    await consul.waitForBlockingQueries(2)
    ac.abort()
    await consul.waitForBlockingQueries(0)
    expect(consul.stats.blockingQueries()).toBe(0)
    expect(await Promise.all(pending)).toEqual(['aborted', 'aborted'])
  })
})
