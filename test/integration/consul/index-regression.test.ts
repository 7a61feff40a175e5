/**
 * An index regression (a snapshot restore) seen by one watch resets every watch of the provider.
 * Consul releases only the queries parked at the restore; a watch that was between two requests
 * sends its old, higher index next and Consul parks it until the index passes that value or the
 * wait ends (docs/design/consul.md#index-rules). These tests put a watch in exactly that spot.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { withDeadline } from '../../support/wait.js'
import { recorder, summary } from './helpers.js'

/** Long enough that a watch parked on a stale index would miss every deadline below. */
const WAIT_MS = 60_000
/** The churn guard's refill: how long the held-back watch waits before its next request. */
const REFILL_MS = 1_500
/** Far below WAIT_MS, far above REFILL_MS plus a round trip on a busy machine. */
const CONVERGE_MS = 15_000

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

interface Unblocked {
  readonly path: string
  readonly minIndex: number
  readonly index: number
  readonly reason: string
}

/** Resolves with the next `unblocked` event of `path`, running `then` synchronously inside it. */
function nextUnblocked(path: string, then: (e: Unblocked) => void = () => {}): Promise<Unblocked> {
  let off = (): void => {}
  const p = new Promise<Unblocked>((resolve) => {
    const on = (e: Unblocked): void => {
      if (e.path !== path) return
      server.events.off('unblocked', on)
      then(e)
      resolve(e)
    }
    server.events.on('unblocked', on)
    off = () => server.events.off('unblocked', on)
  })
  return withDeadline(p, 5_000, `an unblocked query on ${path}`).finally(off)
}

/** A write that bumps the index of `beta` but not its passing set (the instance is critical). */
function bumpBeta(port: number): void {
  server.registerService({
    node: 'node-2',
    name: 'beta',
    id: 'sick',
    port,
    checks: [{ status: 'critical' }],
  })
}

describe('consul index regression across watches', () => {
  it('resets a watch that was between requests when another watch sees the index go back', async () => {
    server.registerService({ node: 'node-2', name: 'alpha', id: 'a1', port: 8080 })
    server.registerService({ node: 'node-2', name: 'beta', id: 'b1', port: 9090 })
    bumpBeta(9999)
    // Raise the index well above the restore target, so the stale index is clearly ahead.
    for (let i = 0; i < 10; i++) server.registerService({ name: 'other', id: `x${i}`, port: i + 1 })
    registry = consul({
      url: server.url,
      waitMs: WAIT_MS,
      // One token: the second early, unchanged answer holds beta back for a refill.
      rateLimit: { burstCount: 1, refillMs: REFILL_MS },
    })
    const alpha = recorder()
    const beta = recorder()
    registry.watch('alpha', alpha.listener, { signal: stop.signal })
    registry.watch('beta', beta.listener, { signal: stop.signal })
    await alpha.snapshot()
    await beta.snapshot()
    await server.waitForBlockingQueries(2)

    // First index-only bump: beta spends its only token and parks again at once.
    const first = nextUnblocked('/v1/health/service/beta')
    bumpBeta(9998)
    await first
    await server.waitForBlockingQueries(2)

    // Second bump: beta's answer is on its way and beta will wait a refill for its next request.
    // The restore happens right after that answer left the server, before the next request:
    // beta is not parked, alpha is (so alpha is released with the lower index).
    const high = server.index
    const alphaReleased = nextUnblocked('/v1/health/service/alpha')
    const second = nextUnblocked('/v1/health/service/beta', () => {
      server.faults.regressIndex(2)
    })
    bumpBeta(9997)
    const betaAnswer = await second
    expect(betaAnswer.index).toBeGreaterThan(2)
    const released = await alphaReleased
    expect(released.index).toBeLessThanOrEqual(2)
    expect(server.index).toBeLessThan(high)

    // A change of beta after the restore: its index stays below beta's old one for good.
    const changedAt = performance.now()
    server.registerService({ node: 'node-2', name: 'beta', id: 'b2', port: 9091 })
    expect(server.index).toBeLessThan(betaAnswer.index)
    const seen = await beta.snapshot((s) => s.instances.some((i) => i.id === 'b2'), {
      timeoutMs: CONVERGE_MS,
    })
    const convergedMs = performance.now() - changedAt
    expect(summary(seen)).toEqual(['b1@10.0.0.2:9090/passing', 'b2@10.0.0.2:9091/passing'])
    expect(convergedMs).toBeLessThan(CONVERGE_MS)

    // Beta never sent its old index after the restore: no query parked above the new index.
    const staleQueries = server.stats.requests.filter(
      (r) =>
        r.path === '/v1/health/service/beta' &&
        Number(r.query.get('index') ?? '0') >= betaAnswer.index,
    )
    expect(staleQueries).toEqual([])
    // A reset is not an error: nothing was reported to either listener.
    expect(alpha.errors).toEqual([])
    expect(beta.errors).toEqual([])

    // Both watches keep working on the new, lower index.
    await server.waitForBlockingQueries(2)
    server.registerService({ node: 'node-2', name: 'alpha', id: 'a2', port: 8081 })
    const alphaNext = await alpha.snapshot((s) => s.instances.length === 2)
    expect(summary(alphaNext)).toEqual(['a1@10.0.0.2:8080/passing', 'a2@10.0.0.2:8081/passing'])
  })
  it('wakes a watch whose long poll reached the agent just after the restore', async () => {
    server.registerService({ node: 'node-2', name: 'alpha', id: 'a1', port: 8080 })
    server.registerService({ node: 'node-2', name: 'beta', id: 'b1', port: 9090 })
    bumpBeta(9999)
    for (let i = 0; i < 10; i++) server.registerService({ name: 'other', id: `x${i}`, port: i + 1 })
    registry = consul({ url: server.url, waitMs: WAIT_MS })
    const alpha = recorder()
    const beta = recorder()
    registry.watch('alpha', alpha.listener, { signal: stop.signal })
    registry.watch('beta', beta.listener, { signal: stop.signal })
    await alpha.snapshot()
    await beta.snapshot()
    await server.waitForBlockingQueries(2)

    // Beta's next long poll was sent before the restore and reaches the agent after it: the
    // restore runs as the request arrives, before it parks, so Consul does not release it.
    let staleIndex = 0
    const restored = new Promise<void>((resolve) => {
      const on = (r: { path: string; query: URLSearchParams }): void => {
        if (r.path !== '/v1/health/service/beta' || !r.query.has('index')) return
        server.events.off('request', on)
        staleIndex = Number(r.query.get('index'))
        server.faults.regressIndex(2)
        resolve()
      }
      server.events.on('request', on)
    })
    const alphaReleased = nextUnblocked('/v1/health/service/alpha')
    bumpBeta(9998)
    await withDeadline(restored, 5_000, "beta's next long poll")
    expect((await alphaReleased).index).toBeLessThanOrEqual(2)

    const changedAt = performance.now()
    server.registerService({ node: 'node-2', name: 'beta', id: 'b2', port: 9091 })
    expect(server.index).toBeLessThan(staleIndex)
    const seen = await beta.snapshot((s) => s.instances.some((i) => i.id === 'b2'), {
      timeoutMs: CONVERGE_MS,
    })
    expect(performance.now() - changedAt).toBeLessThan(CONVERGE_MS)
    expect(summary(seen)).toEqual(['b1@10.0.0.2:9090/passing', 'b2@10.0.0.2:9091/passing'])
    expect(alpha.errors).toEqual([])
    expect(beta.errors).toEqual([])
  })
})
