/**
 * The dispatcher behind the real client: memory registry → service cache → picker → dispatcher.
 * Checks the contract end to end (picker swap before pool retirement, lazy watch on first
 * dispatch, stats, events) rather than against the test directory.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { fetch, request } from 'undici'
import { createWayfind, type Wayfind } from '../../src/client.js'
import { WayfindDispatcher } from '../../src/dispatcher/dispatcher.js'
import { memoryRegistry } from '../../src/registry/memory.js'
import { eventually, withDeadline } from '../support/wait.js'
import { gate, TestServer } from './dispatcher-support.js'

const cleanup: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined)
})

async function start(...ids: string[]): Promise<TestServer[]> {
  const list = await Promise.all(ids.map((id) => new TestServer(id).listen()))
  for (const s of list) cleanup.push(() => s.kill())
  return list
}

function client(strategy: 'round-robin' | 'least-loaded' = 'least-loaded') {
  const registry = memoryRegistry()
  const wf: Wayfind = createWayfind({ registry, strategy, resolveTimeoutMs: 2_000 })
  cleanup.push(() => wf.close())
  return { registry, wf }
}

describe('dispatcher through the client', () => {
  it('routes fetch by service name, starting the watch lazily, and reports stats', async () => {
    const [a, b] = await start('a', 'b')
    const { registry, wf } = client('round-robin')
    registry.put('payments', { id: 'a', host: '127.0.0.1', port: a!.port })
    registry.put('payments', { id: 'b', host: '127.0.0.1', port: b!.port })
    const bodies: string[] = []
    for (let i = 0; i < 6; i++)
      bodies.push(await (await fetch('http://payments/x', { dispatcher: wf.dispatcher })).text())
    expect(bodies.filter((x) => x === 'a').length).toBe(3)
    expect(bodies.filter((x) => x === 'b').length).toBe(3)
    const stats = wf.stats('payments')
    expect(stats.instances.map((i) => [i.id, i.inflight]).sort()).toEqual([
      ['a', 0],
      ['b', 0],
    ])
    expect(stats.instances.every((i) => i.consecutiveFailures === 0)).toBe(true)
  })

  it('deregistering an instance mid-traffic fails no request; its in-flight request completes', async () => {
    const [a, b] = await start('a', 'b')
    const { registry, wf } = client('round-robin')
    const held = gate()
    a!.behaviour = (req, res) => {
      if (req.url === '/slow') void held.wait.then(() => res.end('a-late'))
      else res.end('a')
    }
    registry.put('payments', { id: 'a', host: '127.0.0.1', port: a!.port })
    registry.put('payments', { id: 'b', host: '127.0.0.1', port: b!.port })
    await wf.resolve('payments')
    // Find a's turn: round-robin alternates; send slow requests until one lands on a.
    const slow: Promise<string>[] = []
    while (a!.seen.length === 0) {
      const p = request('http://payments/slow', { dispatcher: wf.dispatcher }).then((r) =>
        r.body.text(),
      )
      slow.push(p)
      await eventually(() => (a!.seen.length + b!.seen.length >= slow.length ? true : undefined), {
        timeoutMs: 5_000,
        intervalMs: 2,
        what: 'request to arrive',
      })
    }
    const changed = new Promise<void>((resolve) => {
      const off = wf.events.on('change', (e) => {
        if (e.removed.length > 0) {
          off()
          resolve()
        }
      })
    })
    const traffic = (async () => {
      const out: string[] = []
      for (let i = 0; i < 200; i++)
        out.push(
          await (await request('http://payments/n', { dispatcher: wf.dispatcher })).body.text(),
        )
      return out
    })()
    registry.remove('payments', 'a')
    await withDeadline(changed, 5_000, 'change event')
    const results = await traffic
    expect(results.every((r) => r === 'a' || r === 'b')).toBe(true)
    expect(results.slice(-50).every((r) => r === 'b')).toBe(true)
    held.open()
    const done = await Promise.all(slow)
    expect(done).toContain('a-late')
    const d = wf.dispatcher
    if (!(d instanceof WayfindDispatcher))
      throw new Error('wf.dispatcher is not a WayfindDispatcher')
    expect(d.poolCount).toBe(1)
  })
})
