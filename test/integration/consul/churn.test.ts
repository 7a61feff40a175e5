/**
 * The churn guard must not delay real changes: after a burst of writes on the agent, a watch's
 * cache matches the catalog within one round trip of the last write, however slowly the token
 * bucket refills. Answers that changed nothing are still paced (watch.test.ts,
 * watch-protocol.test.ts).
 */
import { setTimeout as delay } from 'node:timers/promises'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import type { ServiceSnapshot } from '../../../src/registry/provider.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
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

/** Writes in the burst; more than the bucket's burst, so the old guard paced the tail. */
const WRITES = 40
/** Spacing of the writes: longer than a round trip, so the watch wakes on most of them. */
const SPACING_MS = 5
/** Well below one refill of either bucket below (2 s by default, 10 s in the second case). */
const DEADLINE_MS = 1_000

it.each([
  ['the default rate limit', undefined],
  ['a 10 s refill', { burstCount: 4, refillMs: 10_000 }],
])(
  'a write burst reaches the cache within one round trip of the last write (%s)',
  async (what, rateLimit) => {
    server.registerService({ node: 'node-2', name: 'orders', id: 'o0', port: 8000 })
    registry = consul({ url: server.url, ...(rateLimit === undefined ? {} : { rateLimit }) })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await server.waitForBlockingQueries(1)

    // Registers, moves and removes instances: every write changes the passing set.
    const truth = new Map<string, number>([['o0', 8000]])
    let lastWrite = 0
    for (let i = 1; i <= WRITES; i++) {
      if (i % 5 === 0) {
        const id = `o${String(i - 4)}`
        server.removeService('node-2', id)
        truth.delete(id)
      } else if (i % 5 === 3) {
        const id = `o${String(i - 2)}`
        server.registerService({ node: 'node-2', name: 'orders', id, port: 9000 + i })
        truth.set(id, 9000 + i)
      } else {
        const id = `o${String(i)}`
        server.registerService({ node: 'node-2', name: 'orders', id, port: 8000 + i })
        truth.set(id, 8000 + i)
      }
      lastWrite = performance.now()
      if (i < WRITES) await delay(SPACING_MS)
    }
    const expected = [...truth].map(([id, port]) => `${id}@10.0.0.2:${String(port)}/passing`).sort()
    const matches = (s: ServiceSnapshot): boolean =>
      JSON.stringify(summary(s).sort()) === JSON.stringify(expected)
    const settled = await rec.snapshot(matches, { timeoutMs: DEADLINE_MS })
    const convergedMs = performance.now() - lastWrite
    process.stdout.write(
      `[measure] consul convergence after a ${String(WRITES)}-write burst (${what}): ${convergedMs.toFixed(1)} ms after the last write, ${String(rec.snapshots.length)} snapshots\n`,
    )
    expect(summary(settled).sort()).toEqual(expected)
    expect(rec.errors).toEqual([])
    // Not a busy loop either: about one request per write (a wake) plus the first read.
    const health = server.stats.requests.filter((r) => r.path === '/v1/health/service/orders')
    expect(health.length).toBeLessThanOrEqual(WRITES + 3)
  },
)
