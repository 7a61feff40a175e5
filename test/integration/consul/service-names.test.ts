/**
 * One name rule per registry: a name Consul cannot hold fails at once, with INVALID_OPTION, in
 * resolve(), instances(), the dispatcher and register() alike, and never reaches the agent.
 */
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { createWayfind, type Wayfind } from '../../../src/client.js'
import { ErrorCode, InvalidOptionError } from '../../../src/errors.js'
import { consul } from '../../../src/registry/consul/provider.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'

let server: ConsulTestServer | undefined
let wf: Wayfind | undefined

afterEach(async () => {
  await wf?.close()
  await server?.close()
  wf = undefined
  server = undefined
})

const BAD = ['..', '.', 'pay/ments', 'payments v2', 'pay?ments', 'tab\there', 'bad\uFFFDname']

describe('Consul service names', () => {
  it('resolve() refuses a name Consul cannot hold at once, without a request', async () => {
    server = await startConsulServer()
    wf = createWayfind({ registry: consul({ url: server.url }) })
    for (const name of BAD) {
      // A one-minute timeout: only an immediate rejection lets this test finish in time.
      const error = await wf.resolve(name, { timeoutMs: 60_000 }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error, name).toBeInstanceOf(InvalidOptionError)
      expect((error as InvalidOptionError).option).toBe('service')
      expect((error as Error).message).toMatch(/Consul registry cannot hold this service name/)
      expect(() => wf?.instances(name), name).toThrow(InvalidOptionError)
    }
    const health = server.stats.requests.filter((r) => r.path.startsWith('/v1/health'))
    expect(health).toEqual([])
  })

  it('escapes the name as one path segment: a name with "%" or ":" reaches its own service', async () => {
    server = await startConsulServer()
    server.registerService({ name: 'a%2Fb:c', id: 'x', port: 8080 })
    wf = createWayfind({ registry: consul({ url: server.url }) })
    const instances = await wf.resolve('a%2Fb:c', { timeoutMs: 5_000 })
    expect(instances.map((i) => i.id)).toEqual(['x'])
  })

  it("the dispatcher applies the same rule to its route's names", async () => {
    server = await startConsulServer()
    wf = createWayfind({
      registry: consul({ url: server.url }),
      dispatcher: { route: (host) => (host === 'payments' ? 'pay/ments' : undefined) },
    })
    const error = await request('http://payments/charge', { dispatcher: wf.dispatcher }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect((error as InvalidOptionError | undefined)?.code).toBe(ErrorCode.INVALID_OPTION)
    expect(server.stats.requests.filter((r) => r.path.startsWith('/v1/health'))).toEqual([])
  })

  it('register() applies it too', async () => {
    server = await startConsulServer()
    wf = createWayfind({ registry: consul({ url: server.url }) })
    await expect(
      wf.register({ name: '..', address: '10.0.0.7', port: 8080, check: { ttlMs: 10_000 } }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTION })
    expect(server.stats.requests.filter((r) => r.path.startsWith('/v1/agent'))).toEqual([])
  })
})
