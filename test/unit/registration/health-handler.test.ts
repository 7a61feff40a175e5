import { describe, expect, it } from 'vitest'
import { createWayfind, memoryRegistry } from '../../../src/index.js'

interface Answer {
  status: number
  headers: Record<string, string>
  body: string | undefined
}

/** Calls a handler with a minimal req/res and resolves with what it wrote. */
function call(
  handler: ReturnType<ReturnType<typeof createWayfind>['healthHandler']>,
  url: string,
  method = 'GET',
  next?: () => void,
): Promise<Answer> {
  return new Promise((resolve) => {
    const answer: Answer = { status: 0, headers: {}, body: undefined }
    handler(
      { url, method },
      {
        writeHead: (status, headers) => {
          answer.status = status
          answer.headers = headers
        },
        end: (body) => {
          answer.body = body
          resolve(answer)
        },
      },
      next,
    )
  })
}

describe('wf.healthHandler()', () => {
  it('answers UP with the registrations, then DOWN from the moment draining starts', async () => {
    const wf = createWayfind({ registry: memoryRegistry() })
    const health = wf.healthHandler()
    const reg = await wf.register({ name: 'orders', id: 'o-1', address: '127.0.0.1', port: 9 })
    const up = await call(health, '/health?verbose')
    expect(up.status).toBe(200)
    expect(up.headers['content-type']).toBe('application/json')
    expect(JSON.parse(up.body ?? '')).toEqual({
      status: 'UP',
      draining: false,
      registrations: [{ service: 'orders', id: 'o-1', state: 'registered' }],
    })
    const drained = reg.drain()
    const down = await call(health, '/health')
    expect(down.status).toBe(503)
    expect(JSON.parse(down.body ?? '')).toEqual({
      status: 'DOWN',
      draining: true,
      registrations: [{ service: 'orders', id: 'o-1', state: 'deregistered' }],
    })
    await drained
    await wf.close()
    expect((await call(health, '/health')).status).toBe(503)
  })

  it('other paths: next() when given (express), else 404; HEAD has no body', async () => {
    const wf = createWayfind({ registry: memoryRegistry() })
    const health = wf.healthHandler({ path: '/healthz' })
    let nextCalled = false
    health(
      { url: '/orders', method: 'GET' },
      { writeHead: () => undefined, end: () => undefined },
      () => {
        nextCalled = true
      },
    )
    expect(nextCalled).toBe(true)
    expect((await call(health, '/orders')).status).toBe(404)
    const head = await call(health, '/healthz', 'HEAD')
    expect([head.status, head.body]).toEqual([200, undefined])
    const anyPath = wf.healthHandler({ path: null })
    expect((await call(anyPath, '/whatever')).status).toBe(200)
    await wf.close()
  })

  it('a failing or throwing check answers DOWN', async () => {
    const wf = createWayfind({ registry: memoryRegistry() })
    expect((await call(wf.healthHandler({ check: () => false }), '/health')).status).toBe(503)
    const throwing = wf.healthHandler({
      check: () => Promise.reject(new Error('db down')),
    })
    expect((await call(throwing, '/health')).status).toBe(503)
    expect((await call(wf.healthHandler({ check: () => true }), '/health')).status).toBe(200)
    await wf.close()
  })

  it('refuses bad options, naming them', () => {
    const wf = createWayfind({ registry: memoryRegistry() })
    expect(() => wf.healthHandler({ path: 'health' })).toThrow(/options\.path/)
    expect(() => wf.healthHandler({ chek: () => true } as never)).toThrow(/options\.chek/)
    void wf.close()
  })
})
