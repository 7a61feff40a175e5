/**
 * Protocol corner cases no healthy agent produces on demand: a scripted HTTP server answers the
 * watch's requests one by one, so each rule of the loop can be pinned exactly.
 */
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, type MalformedInstanceError } from '../../../src/errors.js'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import { withDeadline } from '../../support/wait.js'
import { recorder, summary } from './helpers.js'

interface Scripted {
  status?: number
  index?: string | null
  body?: unknown
  /** Hold the answer this long (a blocking query that times out). */
  holdMs?: number
}

interface Seen {
  readonly query: URLSearchParams
}

/** Serves `script` in order; requests past its end are parked until close. */
async function scriptedAgent(script: Scripted[]): Promise<{
  url: string
  seen: Seen[]
  nextRequest: (n: number) => Promise<void>
  close: () => Promise<void>
}> {
  const seen: Seen[] = []
  const waiters: { n: number; resolve: () => void }[] = []
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    seen.push({ query: url.searchParams })
    for (const w of waiters.filter((x) => seen.length >= x.n)) w.resolve()
    const step = script.shift()
    if (step === undefined) return // parked
    const answer = (): void => {
      res.statusCode = step.status ?? 200
      if (step.index !== null) res.setHeader('X-Consul-Index', step.index ?? '1')
      res.setHeader('Content-Type', 'application/json')
      res.end(typeof step.body === 'string' ? step.body : JSON.stringify(step.body ?? []))
    }
    if (step.holdMs === undefined) answer()
    else setTimeout(answer, step.holdMs)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    nextRequest: (n) =>
      withDeadline(
        seen.length >= n
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              waiters.push({ n, resolve })
            }),
        5_000,
        `request #${n}`,
      ),
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

function entry(id: string, port = 8080): unknown {
  return {
    Node: { Node: 'n1', Address: '10.0.0.1', TaggedAddresses: {} },
    Service: {
      ID: id,
      Service: 'orders',
      Tags: [],
      Meta: {},
      Address: '',
      Port: port,
      Weights: { Passing: 1, Warning: 1 },
    },
    Checks: [{ Status: 'passing' }],
  }
}

let agent: Awaited<ReturnType<typeof scriptedAgent>> | undefined
let registry: ConsulRegistry | undefined
afterEach(async () => {
  await registry?.close()
  await agent?.close()
  registry = undefined
  agent = undefined
})

describe('consul watch protocol rules', () => {
  it('confirms a sudden empty answer with a plain read before wiping a healthy set', async () => {
    agent = await scriptedAgent([
      { index: '10', body: [entry('a')] },
      { index: '11', body: [] }, // spurious (streaming/ACL race)
      { index: '12', body: [entry('a')] }, // the confirming read disagrees
    ])
    registry = consul({ url: agent.url, consistency: 'stale' })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await rec.snapshot()
    await agent.nextRequest(4)
    const confirm = agent.seen[2]!.query
    expect(confirm.has('index')).toBe(false)
    // The confirming read asks the leader, not a possibly stale follower.
    expect(confirm.has('stale')).toBe(false)
    expect(agent.seen[3]!.query.get('index')).toBe('12')
    expect(rec.snapshots.map(summary)).toEqual([['a@10.0.0.1:8080/passing']])
  })

  it('applies an empty set once the plain read confirms it', async () => {
    agent = await scriptedAgent([
      { index: '10', body: [entry('a')] },
      { index: '11', body: [] },
      { index: '11', body: [] },
    ])
    registry = consul({ url: agent.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    const empty = await rec.snapshot((s) => s.instances.length === 0)
    expect(empty.revision).toBe('11')
    await agent.nextRequest(4)
    expect(agent.seen[3]!.query.get('index')).toBe('11')
  })

  it('never blocks on index 0: an X-Consul-Index of 0 becomes 1', async () => {
    agent = await scriptedAgent([{ index: '0', body: [entry('a')] }])
    registry = consul({ url: agent.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await rec.snapshot()
    await agent.nextRequest(2)
    expect(agent.seen[1]!.query.get('index')).toBe('1')
    // Said once, as a typed error: an agent stuck on 0 has a bug worth knowing about.
    expect(rec.errors.map((e) => e.code)).toEqual([ErrorCode.INVALID_RESPONSE])
    expect(rec.errors[0]!.message).toMatch(/X-Consul-Index 0/)
  })

  it('never echoes an out-of-range or non-numeric X-Consul-Index: typed error, then a plain read', async () => {
    const tooBig = '18446744073709551616' // 2^64: one past uint64
    agent = await scriptedAgent([
      { index: '5', body: [entry('a')] },
      { index: tooBig, body: [entry('a'), entry('b', 8081)] },
      { index: '-3', body: [entry('a'), entry('b', 8081)] },
      { index: '9'.repeat(500), body: [entry('a'), entry('b', 8081)] },
      { index: '7', body: [entry('a'), entry('b', 8081)] },
    ])
    registry = consul({ url: agent.url, rateLimit: { burstCount: 10, refillMs: 10 } })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await agent.nextRequest(6)
    // Each bad index: a typed error naming the header, and the next request is a plain read.
    expect(rec.errors.map((e) => e.code)).toEqual([
      ErrorCode.INVALID_RESPONSE,
      ErrorCode.INVALID_RESPONSE,
      ErrorCode.INVALID_RESPONSE,
    ])
    expect(rec.errors[0]!.message).toMatch(/X-Consul-Index that is above 2\^64/)
    expect(rec.errors[1]!.message).toMatch(/not a decimal number/)
    // A 500-digit value is quoted short.
    expect(rec.errors[2]!.message.length).toBeLessThan(400)
    const indexes = agent.seen.map((s) => s.query.get('index'))
    expect(indexes).toEqual([null, '5', null, null, null, '7'])
    // The answers' data is current: it was applied, as after an index regression.
    expect(rec.snapshots.map(summary).at(-1)).toEqual([
      'a@10.0.0.1:8080/passing',
      'b@10.0.0.1:8081/passing',
    ])
  })

  it('keeps 64-bit indexes exact', async () => {
    agent = await scriptedAgent([{ index: '18446744073709551000', body: [entry('a')] }])
    registry = consul({ url: agent.url })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    expect((await rec.snapshot()).revision).toBe('18446744073709551000')
    await agent.nextRequest(2)
    expect(agent.seen[1]!.query.get('index')).toBe('18446744073709551000')
  })

  it('treats a missing X-Consul-Index or a non-array body as an error and keeps the last good set', async () => {
    agent = await scriptedAgent([
      { index: '5', body: [entry('a')] },
      { index: null, body: [] },
      { index: '6', body: '{"not":"an array"}' },
      { index: '7', body: 'garbage' },
      { index: '8', body: [entry('a'), entry('b', 8081)] },
    ])
    registry = consul({ url: agent.url, backoff: { initialMs: 1, maxMs: 5 } })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    const last = await rec.snapshot((s) => s.instances.length === 2)
    expect(last.revision).toBe('8')
    expect(rec.errors.map((e) => e.code)).toEqual([
      ErrorCode.REGISTRY_UNAVAILABLE,
      ErrorCode.REGISTRY_UNAVAILABLE,
      ErrorCode.REGISTRY_UNAVAILABLE,
    ])
    expect(rec.errors[0]!.message).toMatch(/X-Consul-Index/)
    expect(rec.errors[1]!.message).toMatch(/not a JSON array/)
    expect(rec.errors[2]!.message).toMatch(/not JSON/)
    expect(rec.snapshots).toHaveLength(2)
    // After an error the next read is a plain one (Go api/watch), so nothing was missed.
    expect(agent.seen[2]!.query.has('index')).toBe(false)
  })

  it('keeps a service whose every entry turns malformed, with one error naming service, entry and field', async () => {
    const garbled = [
      { ...(entry('a') as Record<string, unknown>), Service: { ID: 'a', Port: '8080' } },
      null,
      { Node: { Node: 'n1', Address: '10.0.0.1' } },
    ]
    agent = await scriptedAgent([
      { index: '5', body: [entry('a'), entry('b', 8081)] },
      { index: '6', body: garbled },
      { index: '7', body: garbled },
      { index: '8', body: [entry('a'), entry('b', 8081), entry('c', 8082)] },
    ])
    registry = consul({ url: agent.url, rateLimit: { burstCount: 10, refillMs: 10 } })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await rec.snapshot((s) => s.instances.length === 3)
    // Never 2 → 0: the garbled answers changed nothing.
    expect(rec.snapshots.map((s) => s.instances.length)).toEqual([2, 3])
    // One error for the first garbled answer (not one per entry), none for the identical second.
    expect(rec.errors.map((e) => e.code)).toEqual([ErrorCode.MALFORMED_INSTANCE])
    const error = rec.errors[0] as MalformedInstanceError
    expect(error).toMatchObject({
      service: 'orders',
      key: 'n1/a',
      field: 'Service.Port',
      entries: 3,
    })
    expect(error.message).toMatch(/"orders"/)
    expect(error.message).toMatch(/2 more malformed entries/)
    expect(error.message).toMatch(/last good set keeps serving/)
  })

  it('keeps the last good value of an entry that turns malformed, and skips a new malformed one', async () => {
    agent = await scriptedAgent([
      { index: '5', body: [entry('a'), entry('b', 8081)] },
      // b's port goes out of range, c arrives malformed, d arrives fine.
      { index: '6', body: [entry('a'), entry('b', 70000), entry('c', -1), entry('d', 8083)] },
      { index: '7', body: [entry('a'), entry('b', 9091), entry('d', 8083)] },
    ])
    registry = consul({ url: agent.url, rateLimit: { burstCount: 10, refillMs: 10 } })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await rec.snapshot((s) => s.instances.some((i) => i.port === 9091))
    expect(rec.snapshots.map(summary)).toEqual([
      ['a@10.0.0.1:8080/passing', 'b@10.0.0.1:8081/passing'],
      ['a@10.0.0.1:8080/passing', 'b@10.0.0.1:8081/passing', 'd@10.0.0.1:8083/passing'],
      ['a@10.0.0.1:8080/passing', 'b@10.0.0.1:9091/passing', 'd@10.0.0.1:8083/passing'],
    ])
    expect(rec.errors).toHaveLength(1)
    expect(rec.errors[0]).toMatchObject({ key: 'n1/b', field: 'Service.Port', entries: 2 })
    expect(rec.errors[0]!.message).toMatch(/70000/)
    expect(rec.errors[0]!.message).toMatch(/1 of them keeps its last good value/)
  })

  it("allows Consul's wait/16 jitter: an answer at wait × 1.06 is not a timeout", async () => {
    agent = await scriptedAgent([
      { index: '5', body: [entry('a')] },
      { index: '5', body: [entry('a')], holdMs: 1_060 },
    ])
    registry = consul({ url: agent.url, waitMs: 1_000 })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await rec.snapshot()
    await agent.nextRequest(3)
    expect(agent.seen[1]!.query.get('wait')).toBe('1s')
    expect(agent.seen[2]!.query.get('index')).toBe('5')
    expect(rec.errors).toEqual([])
    expect(rec.snapshots).toHaveLength(1)
  })

  it('rate-limits a server that never blocks (token bucket), and dedupes its unchanged answers', async () => {
    const script: Scripted[] = []
    for (let i = 1; i <= 200; i++) script.push({ index: String(i), body: [entry('a')] })
    agent = await scriptedAgent(script)
    const refillMs = 100
    registry = consul({ url: agent.url, rateLimit: { burstCount: 2, refillMs } })
    const rec = recorder()
    const started = performance.now()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await agent.nextRequest(8)
    const elapsed = performance.now() - started
    // 8 requests: the first read and the one after it are free (the first answer is a change,
    // which costs no token), 2 come from the burst, the other 4 wait a refill each.
    expect(elapsed).toBeGreaterThanOrEqual(4 * refillMs - 20)
    expect(rec.snapshots).toHaveLength(1)
  })
  it('paces an agent that answers at once with the same index, even when the body differs', async () => {
    // Not a write on the agent (the index did not move), so not a change to chase at once.
    const script: Scripted[] = []
    for (let i = 1; i <= 200; i++) script.push({ index: '7', body: [entry(`a${String(i)}`)] })
    agent = await scriptedAgent(script)
    const refillMs = 100
    registry = consul({ url: agent.url, rateLimit: { burstCount: 2, refillMs } })
    const rec = recorder()
    const started = performance.now()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    await agent.nextRequest(8)
    // As for unchanged answers: the first two requests are free, 2 from the burst, 4 refills.
    expect(performance.now() - started).toBeGreaterThanOrEqual(4 * refillMs - 20)
  })

  it('does not pace answers that changed the set under a new index', async () => {
    const script: Scripted[] = []
    for (let i = 1; i <= 12; i++) script.push({ index: String(i), body: [entry(`a${String(i)}`)] })
    agent = await scriptedAgent(script)
    // One refill would outlast the test's deadline: any token spent on a change shows.
    registry = consul({ url: agent.url, rateLimit: { burstCount: 1, refillMs: 60_000 } })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: new AbortController().signal })
    const last = await rec.snapshot((s) => s.revision === '12')
    expect(summary(last)).toEqual(['a12@10.0.0.1:8080/passing'])
    expect(rec.snapshots).toHaveLength(12)
  })
})
