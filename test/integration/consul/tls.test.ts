/**
 * HTTPS to the agent: custom CA, client certificates, the CONSUL_* variables, and ALPN.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode } from '../../../src/errors.js'
import { consul, type ConsulRegistry } from '../../../src/registry/consul/provider.js'
import { makeTestCerts, type TestCerts } from '../../support/certs.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { recorder, summary } from './helpers.js'

let certs: TestCerts
let server: ConsulTestServer | undefined
let registry: ConsulRegistry | undefined
let stop: AbortController

beforeAll(() => {
  certs = makeTestCerts()
})
afterAll(() => {
  certs.remove()
})
afterEach(async () => {
  stop.abort()
  await registry?.close()
  await server?.close()
})

async function start(http2: boolean): Promise<ConsulTestServer> {
  stop = new AbortController()
  server = await startConsulServer({
    tls: { key: certs.serverKey, cert: certs.serverCert, ca: certs.ca, requestCert: true },
    http2,
  })
  server.registerService({ name: 'orders', id: 'o1', port: 8080 })
  return server
}

describe('consul over TLS', () => {
  it('uses CONSUL_HTTP_ADDR, CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY, over HTTP/2', async () => {
    const s = await start(true)
    registry = consul({
      env: {
        CONSUL_HTTP_ADDR: `127.0.0.1:${s.port}`,
        CONSUL_HTTP_SSL: 'true',
        CONSUL_CACERT: certs.caFile,
        CONSUL_CLIENT_CERT: certs.clientCertFile,
        CONSUL_CLIENT_KEY: certs.clientKeyFile,
      },
    })
    expect(registry.url).toBe(`https://127.0.0.1:${s.port}`)
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    expect(summary(await rec.snapshot())).toEqual(['o1@127.0.0.1:8080/passing'])
    expect(registry.stats.protocol).toBe('h2')
    // Registration shares the same single HTTP/2 connection.
    await registry.register(
      {
        name: 'payments',
        id: 'p1',
        address: '127.0.0.1',
        port: 1,
        tags: [],
        meta: {},
        weight: 1,
        check: undefined,
      },
      { signal: stop.signal, onState: () => {} },
    )
    expect(s.stats.peakConnections()).toBe(1)
  })

  it('falls back to HTTP/1.1 over TLS when the agent does not offer h2', async () => {
    const s = await start(false)
    registry = consul({
      url: `https://127.0.0.1:${s.port}`,
      tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey },
    })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    await rec.snapshot()
    await s.waitForBlockingQueries(1)
    expect(registry.stats.protocol).toBe('http1')
    expect(registry.stats.pollCapacity).toBe(60)
    s.registerService({ name: 'orders', id: 'o2', port: 8081 })
    await rec.snapshot((x) => x.instances.length === 2)
    expect(s.stats.requests.every((r) => r.httpVersion === '1.1')).toBe(true)
  })

  it('reports a failed handshake (no client certificate) as REGISTRY_UNAVAILABLE and keeps retrying', async () => {
    const s = await start(true)
    registry = consul({
      url: `https://127.0.0.1:${s.port}`,
      tls: { ca: certs.ca },
      backoff: { initialMs: 10, maxMs: 50 },
    })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    const first = await rec.error()
    expect(first.code).toBe(ErrorCode.REGISTRY_UNAVAILABLE)
    await rec.error(() => true, { from: 2 })
    expect(rec.snapshots).toEqual([])
  })

  it('rejects an agent certificate from an unknown CA', async () => {
    const s = await start(true)
    registry = consul({
      url: `https://127.0.0.1:${s.port}`,
      env: {},
      backoff: { initialMs: 10, maxMs: 50 },
    })
    const rec = recorder()
    registry.watch('orders', rec.listener, { signal: stop.signal })
    const err = await rec.error()
    expect(err.message).toMatch(/certificate/i)
    expect(s.stats.requests).toHaveLength(0)
  })
})
