/**
 * The Consul provider behind the public client: `createWayfind({ registry: consul({ url }) })`.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { createWayfind, type Wayfind } from '../../../src/client.js'
import { ErrorCode } from '../../../src/errors.js'
import { consul } from '../../../src/registry/consul/provider.js'
import { startConsulServer, type ConsulTestServer } from '../../support/consul-server/index.js'
import { waitFor, withDeadline } from '../../support/wait.js'

let server: ConsulTestServer
let wf: Wayfind | undefined
let other: Wayfind | undefined

afterEach(async () => {
  await wf?.close()
  await other?.close()
  wf = undefined
  other = undefined
  await server.close()
})

describe('createWayfind with consul()', () => {
  it('blocks the first resolve() until an instance passes, then announces changes', async () => {
    server = await startConsulServer()
    server.addNode('node-2', { address: '10.0.0.2' })
    server.registerService({
      node: 'node-2',
      name: 'payments',
      id: 'p1',
      port: 8080,
      checks: [{ status: 'critical' }],
    })
    wf = createWayfind({ registry: consul({ url: server.url }) })
    let settled = false
    const resolving = wf.resolve('payments', { timeoutMs: 10_000 }).finally(() => {
      settled = true
    })
    // The watch has answered (nothing passing) and is parked on the next change.
    await server.waitForBlockingQueries(1)
    expect(settled).toBe(false)
    expect(wf.instances('payments')).toEqual([])
    server.setCheck('node-2', 'service:p1', 'passing', { serviceId: 'p1' })
    const instances = await resolving
    expect(instances.map((i) => `${i.id}@${i.host}:${i.port}`)).toEqual(['p1@10.0.0.2:8080'])
    const change = waitFor(wf.events, 'change', (e) => e.service === 'payments')
    server.registerService({ node: 'node-2', name: 'payments', id: 'p2', port: 8081 })
    const e = await change
    expect(e.added.map((i) => i.id)).toEqual(['p2'])
    expect(e.instances).toHaveLength(2)
  })

  it('times out resolve() with RESOLVE_TIMEOUT when nothing ever passes', async () => {
    server = await startConsulServer()
    wf = createWayfind({ registry: consul({ url: server.url }) })
    await expect(wf.resolve('nobody', { timeoutMs: 300 })).rejects.toMatchObject({
      code: ErrorCode.RESOLVE_TIMEOUT,
    })
  })

  it('registers through wf.register(): another client resolves it; deregister removes it', async () => {
    server = await startConsulServer()
    wf = createWayfind({ registry: consul({ url: server.url }) })
    other = createWayfind({ registry: consul({ url: server.url }) })
    const registered = waitFor(wf.events, 'registered')
    const reg = await wf.register({
      name: 'payments',
      id: 'payments-1',
      address: '127.0.0.1',
      port: 8080,
      check: { ttlMs: 3_000 },
    })
    expect((await registered).id).toBe('payments-1')
    const found = await other.resolve('payments', { timeoutMs: 5_000 })
    expect(found.map((i) => i.id)).toEqual(['payments-1'])
    const gone = waitFor(other.events, 'change', (e) => e.instances.length === 0)
    await reg.deregister()
    await gone
  })

  it('deregisters within 1 s of SIGTERM in a child process, and the process exits', async () => {
    server = await startConsulServer()
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./fixtures/sigterm-child.ts', import.meta.url))],
      {
        env: { ...process.env, CONSUL_URL: server.url },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const exited = once(child, 'exit')
    try {
      await withDeadline(
        new Promise<void>((resolve) => {
          child.stdout.on('data', (d: Buffer) => {
            if (d.toString().includes('registered')) resolve()
          })
        }),
        20_000,
        'the child to register',
      )
      const listed = await fetch(`${server.url}/v1/agent/service/worker-1`)
      expect(listed.status).toBe(200)
      const deregistered = new Promise<void>((resolve) => {
        server.events.on('request', (r: { method: string; path: string }) => {
          if (r.method === 'PUT' && r.path === '/v1/agent/service/deregister/worker-1') resolve()
        })
      })
      child.kill('SIGTERM')
      await withDeadline(deregistered, 1_000, 'the deregistration after SIGTERM')
      const [code, signal] = (await withDeadline(exited, 5_000, 'the child to exit')) as [
        number | null,
        NodeJS.Signals | null,
      ]
      // It ends the way SIGTERM ends a process without handlers.
      expect({ code, signal, stderr }).toMatchObject({ signal: 'SIGTERM' })
      const after = await fetch(`${server.url}/v1/agent/service/worker-1`)
      expect(after.status).toBe(404)
    } finally {
      child.kill('SIGKILL')
    }
  })
})
