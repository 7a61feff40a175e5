/**
 * Consul allows 200 connections per client IP and every blocking query holds one
 * (docs/design/consul.md#connection-limit). 300 watched services must fit a budget of 64
 * connections over HTTP/1.1 without any watch starving, and share a single connection over HTTP/2.
 */
import { setMaxListeners } from 'node:events'
import { afterEach, describe, expect, it } from 'vitest'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import { makeTestCerts, type TestCerts } from '../../support/certs.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { watchAll } from '../../support/watch-all.js'

const SERVICES = 300

let server: ConsulTestServer | undefined
let registry: ConsulRegistry | undefined
let certs: TestCerts | undefined
const stop = new AbortController()
setMaxListeners(0, stop.signal)

afterEach(async () => {
  await registry?.close()
  await server?.close()
  certs?.remove()
})

function populate(s: ConsulTestServer): string[] {
  s.addNode('node-2', { address: '10.0.0.2' })
  const names = Array.from({ length: SERVICES }, (_, i) => `svc-${i}`)
  for (const name of names) s.registerService({ node: 'node-2', name, id: `${name}-a`, port: 8000 })
  return names
}

describe('consul connection budget', () => {
  it(`watches ${SERVICES} services within 64 connections over HTTP/1.1, delivering every change`, async () => {
    server = await startConsulServer()
    const names = populate(server)
    registry = consul({ url: server.url, maxConnections: 64, rotationMs: 2_000 })
    const all = watchAll(registry, names, stop.signal)
    await all((s) => s.instances.length === 1, 20_000, 'every first snapshot')
    expect(registry.stats.pollCapacity).toBe(60)
    // Every slot is used at once: 60 long polls parked in parallel, the rest queued.
    await server.waitForBlockingQueries(60)
    // Change every service while most watches are queued: each must still see its change.
    for (const name of names)
      server.registerService({ node: 'node-2', name, id: `${name}-b`, port: 8001 })
    await all((s) => s.instances.length === 2, 30_000, 'every change')
    expect(server.stats.peakConnections()).toBeLessThanOrEqual(64)
    expect(server.stats.rejectedConnections()).toBe(0)
    expect(registry.stats.peakConnections).toBeLessThanOrEqual(64)
    expect(registry.stats.activePolls).toBeLessThanOrEqual(60)
  })

  it(`shares one connection for ${SERVICES} watches over HTTP/2`, async () => {
    certs = makeTestCerts()
    server = await startConsulServer({
      tls: { key: certs.serverKey, cert: certs.serverCert },
      http2: true,
    })
    const names = populate(server)
    registry = consul({
      url: server.url.replace('http:', 'https:'),
      tls: { ca: certs.ca },
      rotationMs: 2_000,
    })
    const all = watchAll(registry, names, stop.signal)
    await all((s) => s.instances.length === 1, 20_000, 'every first snapshot')
    expect(registry.stats.protocol).toBe('h2')
    // Streams really multiplex: 200 long polls parked at once on the one connection.
    await server.waitForBlockingQueries(200)
    expect(registry.stats.pollCapacity).toBe(200)
    for (const name of names)
      server.registerService({ node: 'node-2', name, id: `${name}-b`, port: 8001 })
    await all((s) => s.instances.length === 2, 30_000, 'every change')
    expect(server.stats.peakConnections()).toBe(1)
    expect(registry.stats.peakConnections).toBe(1)
    expect(server.stats.requests.every((r) => r.httpVersion === '2.0')).toBe(true)
  })

  it('makes long polls that started before the budget filled yield to newly watched services', async () => {
    server = await startConsulServer()
    server.addNode('node-2', { address: '10.0.0.2' })
    const names = Array.from({ length: 6 }, (_, i) => `late-${i}`)
    for (const name of names)
      server.registerService({ node: 'node-2', name, id: `${name}-a`, port: 8000 })
    // 4 connections: 1 for short requests, 3 for long polls.
    registry = consul({ url: server.url, maxConnections: 4, rotationMs: 1_000 })
    const early = watchAll(registry, names.slice(0, 3), stop.signal)
    await early((s) => s.instances.length === 1, 10_000, 'the early watches')
    await server.waitForBlockingQueries(3)
    const waits = server.stats.requests
      .filter((r) => r.query.has('index'))
      .map((r) => r.query.get('wait'))
    expect(new Set(waits)).toEqual(new Set(['5m']))
    let yielded = 0
    server.events.on('unblocked', (e: { reason: string }) => {
      if (e.reason === 'client-closed') yielded++
    })
    const late = watchAll(registry, names.slice(3), stop.signal)
    await late((s) => s.instances.length === 1, 10_000, 'the late watches')
    // Only the late services change: their watches hold no slot until the early polls yield.
    for (const name of names.slice(3))
      server.registerService({ node: 'node-2', name, id: `${name}-b`, port: 8001 })
    await late((s) => s.instances.length === 2, 15_000, 'every late change')
    // The 5-minute polls were asked to yield (and were re-sent with a fair wait).
    expect(yielded).toBeGreaterThanOrEqual(1)
    expect(server.stats.requests.some((r) => r.query.get('wait') === '1s')).toBe(true)
    expect(server.stats.peakConnections()).toBeLessThanOrEqual(4)
  })
})
