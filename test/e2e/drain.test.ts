/**
 * The drain sequence in one process, on real sockets: deregister → wait drainDelayMs (still
 * serving) → stop accepting while requests in flight finish → done, each step bounded. The
 * child-process measurement under load is in drain-measured.test.ts.
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, createServer as createH2Server, type Http2Server } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { Agent, request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { createWayfind, type Wayfind } from '../../src/index.js'
import { withDeadline } from '../support/wait.js'

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
})

async function listen(server: Server | Http2Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(
    () =>
      new Promise((resolve) => {
        server.close(resolve)
        if ('closeAllConnections' in server) server.closeAllConnections()
      }),
  )
  return (server.address() as AddressInfo).port
}

function client(): Wayfind {
  const wf = createWayfind()
  cleanups.push(() => wf.close())
  return wf
}

/** A server whose handler answers after `ms`; `arrived` fires on each request. */
function slowServer(ms: number): Server {
  return createServer((_req: IncomingMessage, res: ServerResponse) => {
    setTimeout(() => res.end('done'), ms)
  })
}

describe('drain', () => {
  it('deregisters, keeps serving through drainDelayMs, then lets requests in flight finish', async () => {
    const order: string[] = []
    const server = slowServer(300)
    const port = await listen(server)
    const wf = client()
    const health = wf.healthHandler()
    const reg = await wf.register(
      { name: 'orders', address: '127.0.0.1', port },
      {
        server,
        drainDelayMs: 1_000,
        drainTimeoutMs: 5_000,
        onDrain: () => {
          order.push('onDrain')
          return Promise.resolve()
        },
      },
    )
    wf.events.on('deregistered', () => order.push('deregistered'))
    server.on('close', () => order.push('server closed'))
    const agent = new Agent({ keepAliveTimeout: 30_000 })
    cleanups.push(() => agent.close())
    const url = `http://127.0.0.1:${String(port)}/`

    // A request in flight when the drain starts.
    const arrived = once(server, 'request')
    const inFlight = request(url, { dispatcher: agent, method: 'POST', body: 'x' })
    await arrived
    expect(wf.health().status).toBe('UP')
    const draining = reg.drain()
    // DOWN the moment draining starts, before deregistration has even finished.
    expect(reg.draining).toBe(true)
    expect(wf.health()).toMatchObject({ status: 'DOWN', draining: true })
    const res = { status: 0, body: '' }
    health(
      { url: '/health', method: 'GET' },
      { writeHead: (s) => (res.status = s), end: (b) => (res.body = b ?? '') },
    )
    expect(res.status).toBe(503)
    expect(JSON.parse(res.body)).toMatchObject({ status: 'DOWN' })

    // Still accepting during the delay (callers that have not seen the removal yet).
    const during = await request(url, { method: 'POST', body: 'y' })
    expect(during.statusCode).toBe(200)
    expect(during.headers.connection).toBe('close')
    expect(await during.body.text()).toBe('done')

    const first = await inFlight
    expect(first.statusCode).toBe(200)
    expect(first.headers.connection).toBe('close') // its keep-alive socket ends with it
    expect(await first.body.text()).toBe('done')

    await withDeadline(draining, 5_000, 'the drain')
    expect(order).toEqual(['deregistered', 'onDrain', 'server closed'])
    expect(reg.state).toBe('deregistered')
    await expect(request(url)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  it('cuts what is still running at drainTimeoutMs: the drain is bounded', async () => {
    const server = createServer(() => {
      // never answers
    })
    const port = await listen(server)
    const wf = client()
    const reg = await wf.register(
      { name: 'orders', address: '127.0.0.1', port },
      { server, drainDelayMs: 0, drainTimeoutMs: 300 },
    )
    const arrived = once(server, 'request')
    const stuck = request(`http://127.0.0.1:${String(port)}/`)
    await arrived
    await withDeadline(reg.drain(), 5_000, 'the drain to give up on the stuck request')
    await expect(stuck).rejects.toThrow()
    expect(server.listening).toBe(false)
  })

  it('an onDrain that never finishes is reported and does not hold the drain', async () => {
    const wf = client()
    const errors: string[] = []
    wf.events.on('error', (e) => errors.push(e.error.message))
    const reg = await wf.register(
      { name: 'worker', address: '127.0.0.1', port: 9 },
      { onDrain: () => new Promise<void>(() => undefined), drainDelayMs: 0, drainTimeoutMs: 200 },
    )
    await withDeadline(reg.drain(), 5_000, 'the drain')
    expect(errors).toEqual([expect.stringContaining('did not finish within drainTimeoutMs')])
  })

  it('drains an HTTP/2 server: the open stream is served, then GOAWAY', async () => {
    const server = createH2Server()
    server.on('stream', (stream) => {
      setTimeout(() => {
        stream.respond({ ':status': 200 })
        stream.end('h2 done')
      }, 300)
    })
    const port = await listen(server)
    const wf = client()
    const reg = await wf.register(
      { name: 'orders', address: '127.0.0.1', port },
      { server, drainDelayMs: 0, drainTimeoutMs: 5_000 },
    )
    const session = connect(`http://127.0.0.1:${String(port)}`)
    cleanups.push(() => Promise.resolve(session.destroy()))
    const goaway = once(session, 'goaway')
    const stream = session.request({ ':path': '/', ':method': 'POST' })
    stream.end('x')
    await once(server, 'stream')
    const draining = reg.drain()
    let body = ''
    stream.setEncoding('utf8').on('data', (c: string) => (body += c))
    await withDeadline(once(stream, 'end'), 5_000, 'the h2 response')
    expect(body).toBe('h2 done')
    await withDeadline(goaway, 5_000, 'GOAWAY')
    await withDeadline(draining, 5_000, 'the drain')
    expect(server.listening).toBe(false)
  })

  it('wf.close() drains every registration first', async () => {
    const server = slowServer(200)
    const port = await listen(server)
    const wf = client()
    await wf.register(
      { name: 'orders', address: '127.0.0.1', port },
      { server, drainDelayMs: 100, drainTimeoutMs: 5_000 },
    )
    const arrived = once(server, 'request')
    const inFlight = request(`http://127.0.0.1:${String(port)}/`, { method: 'POST', body: 'x' })
    await arrived
    await withDeadline(wf.close(), 5_000, 'close()')
    const res = await inFlight
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe('done')
    expect(server.listening).toBe(false)
    expect(wf.health().status).toBe('DOWN')
  })

  it('refuses bad drain options at once, naming the option', async () => {
    const wf = client()
    const reg = { name: 'orders', address: '127.0.0.1', port: 9 }
    await expect(wf.register(reg, { server: {} as never })).rejects.toMatchObject({
      code: 'WAYFIND_ERR_INVALID_OPTION',
      message: expect.stringContaining('options.server') as unknown,
    })
    await expect(wf.register(reg, { onDrain: 'close' as never })).rejects.toMatchObject({
      message: expect.stringContaining('options.onDrain') as unknown,
    })
    await expect(wf.register(reg, { drainDelayMs: -1 })).rejects.toMatchObject({
      message: expect.stringContaining('options.drainDelayMs') as unknown,
    })
    await expect(wf.register(reg, { drainTimeoutMs: 0 })).rejects.toMatchObject({
      message: expect.stringContaining('options.drainTimeoutMs') as unknown,
    })
  })
})
