/**
 * Far more watched services than connections. bench/many.ts found the rotation stalling at
 * 1,000 services × 10 instances on 64 connections: after registry-wide changes every watch
 * must still reach the registry's current state, within the connection budget. Writes are
 * made as the benchmark makes them (every instance re-registered with a passing check, one
 * Raft write each), which keeps the agent busy while the watches rotate. Also: watching many
 * services must not pile abort listeners on one signal (MaxListenersExceededWarning).
 */
import { getEventListeners } from 'node:events'
import { afterEach, describe, expect, it } from 'vitest'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import type { ServiceSnapshot } from '../../../src/registry/provider.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { withDeadline } from '../../support/wait.js'
import { watchAll } from '../../support/watch-all.js'

const SERVICES = 400
/** 16 connections: 4 for short requests, 12 long-poll slots for 400 services. */
const MAX_CONNECTIONS = 16
const SLOTS = 12

let server: ConsulTestServer | undefined
let registry: ConsulRegistry | undefined

afterEach(async () => {
  await registry?.close()
  await server?.close()
})

/** Every service gets instances 0..perService-1 (re-registering the existing ones, as bench/lib does). */
function fill(s: ConsulTestServer, names: readonly string[], perService: number): void {
  for (const name of names)
    for (let k = 0; k < perService; k++)
      s.registerService({
        name,
        id: `${name}-${k}`,
        address: '127.0.0.1',
        port: 20_000 + k,
        checks: [{ status: 'passing' }],
      })
}

/** Every service has exactly `count` instances. */
const at =
  (count: number) =>
  (s: ServiceSnapshot): boolean =>
    s.instances.length === count

describe('consul watches oversubscribing the connection budget', () => {
  it(`keeps ${SERVICES} services on ${MAX_CONNECTIONS} connections up to date through two registry-wide changes`, async () => {
    const warnings: Error[] = []
    const onWarning = (w: Error): void => {
      warnings.push(w)
    }
    process.on('warning', onWarning)
    try {
      server = await startConsulServer()
      const names = Array.from({ length: SERVICES }, (_, i) => `svc-${i}`)
      fill(server, names, 1)
      registry = consul({ url: server.url, maxConnections: MAX_CONNECTIONS })
      const stop = new AbortController()
      const all = watchAll(registry, names, stop.signal)
      // One listener on the caller's signal, however many services it watches.
      expect(getEventListeners(stop.signal, 'abort')).toHaveLength(1)
      await all(at(1), 20_000, 'every service at 1 instance')
      expect(registry.stats.pollCapacity).toBe(SLOTS)
      // Every slot busy: the other watches queue for one.
      await server.waitForBlockingQueries(SLOTS)
      fill(server, names, 5)
      await all(at(5), 30_000, 'every service at 5 instances')
      fill(server, names, 10)
      await all(at(10), 30_000, 'every service at 10 instances')
      expect(server.stats.peakConnections()).toBeLessThanOrEqual(MAX_CONNECTIONS)
      expect(server.stats.rejectedConnections()).toBe(0)
      expect(registry.stats.peakConnections).toBeLessThanOrEqual(MAX_CONNECTIONS)
      expect(registry.stats.activePolls).toBeLessThanOrEqual(SLOTS)
      await registry.close()
      // Closing ended every watch and took the listener off the caller's signal.
      expect(registry.stats.watches).toBe(0)
      expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0)
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
    } finally {
      process.off('warning', onWarning)
    }
  }, 90_000)

  it('starts 400 watches at once without a read timing out while it waits for a connection', async () => {
    server = await startConsulServer()
    const names = Array.from({ length: SERVICES }, (_, i) => `svc-${i}`)
    fill(server, names, 1)
    // A short request timeout: a read whose timer ran while it queued behind 399 others for a
    // connection would time out unsent. Reads wait for a slot without a timer instead.
    registry = consul({ url: server.url, maxConnections: MAX_CONNECTIONS, requestTimeoutMs: 250 })
    const errors: string[] = []
    const latest = new Map<string, number>()
    const stop = new AbortController()
    let poke = (): void => {}
    for (const name of names)
      registry.watch(
        name,
        {
          onSnapshot: (s) => {
            latest.set(name, s.instances.length)
            poke()
          },
          onError: (e) => {
            errors.push(e.message)
          },
        },
        { signal: stop.signal },
      )
    await withDeadline(
      new Promise<void>((resolve) => {
        poke = () => {
          if (latest.size === SERVICES) resolve()
        }
        poke()
      }),
      20_000,
      'every first snapshot',
    )
    expect(errors).toEqual([])
    expect(server.stats.peakConnections()).toBeLessThanOrEqual(MAX_CONNECTIONS)
    stop.abort()
  })

  it('stops only the watches of the signal that aborted, and drops its listener', async () => {
    server = await startConsulServer()
    const names = Array.from({ length: 20 }, (_, i) => `svc-${i}`)
    fill(server, names, 1)
    registry = consul({ url: server.url, maxConnections: 4 })
    const a = new AbortController()
    const b = new AbortController()
    const first = watchAll(registry, names.slice(0, 12), a.signal)
    const second = watchAll(registry, names.slice(12), b.signal)
    await first(at(1), 10_000, 'every service at 1 instance')
    await second(at(1), 10_000, 'every service at 1 instance')
    expect(registry.stats.watches).toBe(20)
    a.abort()
    expect(registry.stats.watches).toBe(8)
    expect(getEventListeners(a.signal, 'abort')).toHaveLength(0)
    // The other signal's watches still follow changes.
    fill(server, names, 2)
    await second(at(2), 10_000, 'every service at 2 instances')
    expect(getEventListeners(b.signal, 'abort')).toHaveLength(1)
  })
})
