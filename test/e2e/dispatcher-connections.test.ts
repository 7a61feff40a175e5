/**
 * wayfind's own per-instance connections (src/dispatcher/instance-pool.ts), against real
 * node:http servers: the connection bound, no head-of-line blocking, FIFO waiting, aborts while
 * waiting, refused connects, backpressure, close and destroy.
 */
import type { Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { request, type Dispatcher } from 'undici'
import { WayfindDispatcher } from '../../src/dispatcher/dispatcher.js'
import type { DispatcherOptions } from '../../src/dispatcher/options.js'
import { FakeClock } from '../support/fake-clock.js'
import { eventually, withDeadline } from '../support/wait.js'
import { deadInstance, FakeDirectory, gate, TestServer } from './dispatcher-support.js'

const cleanup: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined)
})

/** A server that counts the TCP connections it accepted and those still open. */
async function server(
  id: string,
): Promise<{ s: TestServer; connections: () => number; open: () => number }> {
  const s = new TestServer(id)
  let n = 0
  let open = 0
  s.server.on('connection', (socket: Socket) => {
    n++
    open++
    socket.on('close', () => {
      open--
    })
  })
  await s.listen()
  cleanup.push(() => s.kill())
  return { s, connections: () => n, open: () => open }
}

function setup(opts: DispatcherOptions = {}, clock?: FakeClock) {
  const dir = new FakeDirectory(clock === undefined ? {} : { clock })
  const d = new WayfindDispatcher(dir, opts)
  cleanup.push(() => d.destroy())
  return { dir, d }
}

/** Holds `/slow` until the gate opens; answers everything else with the path. */
function holdSlow(s: TestServer): { open: () => void } {
  const held = gate()
  s.behaviour = (req, res) => {
    if (req.url === '/slow') void held.wait.then(() => res.end('slow'))
    else res.end(req.url)
  }
  return held
}

async function seen(s: TestServer, n: number, what: string): Promise<void> {
  await eventually(() => (s.seen.length >= n ? true : undefined), {
    timeoutMs: 5_000,
    intervalMs: 5,
    what,
  })
}

/** One instance with `connections: 1`, that connection held by a `/slow` request. */
async function oneBusyConnection(opts: DispatcherOptions = {}) {
  const { s, connections } = await server('a')
  const held = holdSlow(s)
  const { dir, d } = setup({ connections: 1, ...opts })
  dir.set('payments', [s.instance()])
  const key = s.instance().key
  const slow = request('http://payments/slow', { dispatcher: d })
  await seen(s, 1, 'slow request at a')
  return { s, connections, held, dir, d, key, slow }
}

/** `n` concurrent GETs of `/<prefix><i>`; their bodies, in order. */
function concurrent(d: Dispatcher, prefix: string, n: number): Promise<string[]> {
  return withDeadline(
    Promise.all(
      Array.from({ length: n }, async (_, i) =>
        (await request(`http://payments/${prefix}${i}`, { dispatcher: d })).body.text(),
      ),
    ),
    5_000,
    `${n} concurrent requests`,
  )
}

/** The error a request ends in (undefined when it succeeds). */
function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  )
}

describe('per-instance connections', () => {
  it('never queues a request behind a busy connection while another has room', async () => {
    const { s, connections } = await server('a')
    const held = holdSlow(s)
    const { dir, d } = setup({ connections: 2 })
    dir.set('payments', [s.instance()])
    const slow = request('http://payments/slow', { dispatcher: d })
    await seen(s, 1, 'slow request at a')
    // The slow request holds one connection: these go one by one over the other.
    for (let i = 0; i < 5; i++) {
      const res = await withDeadline(
        request(`http://payments/f${i}`, { dispatcher: d }),
        5_000,
        `fast request ${i}`,
      )
      expect(await res.body.text()).toBe(`/f${i}`)
    }
    held.open()
    expect(await (await slow).body.text()).toBe('slow')
    expect(connections()).toBe(2)
  })

  it('bounds connections and serves waiting requests in arrival order', async () => {
    const { s, connections, held, dir, d, key, slow } = await oneBusyConnection()
    const waiting = [1, 2, 3].map((i) => request(`http://payments/w${i}`, { dispatcher: d }))
    expect(dir.load.record(key).inflight).toBe(4)
    expect(d.stats('payments').instances[0]).toMatchObject({
      inflight: 4,
      queued: 3,
      connections: 1,
    })
    held.open()
    const bodies = await withDeadline(
      Promise.all([slow, ...waiting].map(async (p) => (await p).body.text())),
      5_000,
      'all requests',
    )
    expect(bodies).toEqual(['slow', '/w1', '/w2', '/w3'])
    expect(d.stats('payments').instances[0]).toMatchObject({ inflight: 0, queued: 0 })
    expect(s.seen.map((x) => x.url)).toEqual(['/slow', '/w1', '/w2', '/w3'])
    expect(connections()).toBe(1)
    expect(dir.load.record(key).inflight).toBe(0)
  })

  it('answers an abort while the request waits for a connection, and skips it later', async () => {
    const { s, held, dir, d, key, slow } = await oneBusyConnection()
    const ac = new AbortController()
    const waiting = errorOf(
      request('http://payments/aborted', { dispatcher: d, signal: ac.signal }),
    )
    expect(dir.load.record(key).inflight).toBe(2)
    expect(d.stats('payments').instances[0]?.queued).toBe(1)
    ac.abort()
    // Rejected while the only connection is still held by /slow.
    const err = await withDeadline(waiting, 5_000, 'aborted waiting request')
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).name).toBe('AbortError')
    expect(dir.load.record(key).inflight).toBe(1)
    expect(d.stats('payments').instances[0]?.queued).toBe(0)
    held.open()
    expect(await (await slow).body.text()).toBe('slow')
    expect(await (await request('http://payments/next', { dispatcher: d })).body.text()).toBe(
      '/next',
    )
    expect(s.seen.map((x) => x.url)).toEqual(['/slow', '/next'])
    expect(dir.load.record(key).inflight).toBe(0)
  })

  it('drops a connection whose connect was refused and dials again for the next request', async () => {
    const dead = await deadInstance()
    const { dir, d } = setup({ connections: 1, retry: { connectRetries: 0 } })
    dir.set('payments', [dead])
    for (let i = 0; i < 3; i++) {
      // With the failed connection kept as busy, the second request would wait forever.
      const err = await withDeadline(
        errorOf(request('http://payments/x', { dispatcher: d })),
        5_000,
        `refused request ${i}`,
      )
      expect((err as { code?: string }).code).toBe('ECONNREFUSED')
    }
    expect(dir.load.record(dead.key).inflight).toBe(0)
  })

  it('returns false from dispatch() when every connection is busy, then emits drain', async () => {
    const { s } = await server('a')
    const held = holdSlow(s)
    const { dir, d } = setup({ connections: 1 })
    dir.set('payments', [s.instance()])
    const results: unknown[] = []
    /* eslint-disable @typescript-eslint/no-deprecated -- a legacy handler, as request() uses */
    const handler = (): Dispatcher.DispatchHandler => ({
      onConnect() {},
      onHeaders: () => true,
      onData: () => true,
      onComplete: () => {
        results.push('done')
      },
      onError: (e: Error) => {
        results.push(e)
      },
    })
    /* eslint-enable @typescript-eslint/no-deprecated */
    const drained = new Promise<unknown>((resolve) => d.once('drain', resolve))
    const opts = { origin: 'http://payments', path: '/slow', method: 'GET' as const }
    expect(d.dispatch(opts, handler())).toBe(false) // took the only connection
    expect(d.dispatch({ ...opts, path: '/next' }, handler())).toBe(false) // waits
    held.open()
    const origin = await withDeadline(drained, 5_000, 'drain')
    expect(String(origin)).toBe('http://payments/')
    await eventually(() => (results.length === 2 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'both requests',
    })
    expect(results).toEqual(['done', 'done'])
  })

  it('close() lets waiting and running requests finish; destroy() fails waiting ones', async () => {
    const { s } = await server('a')
    const held = holdSlow(s)
    const { dir, d } = setup({ connections: 1 })
    dir.set('payments', [s.instance()])
    const slow = request('http://payments/slow', { dispatcher: d })
    await seen(s, 1, 'slow request at a')
    const waiting = request('http://payments/w', { dispatcher: d })
    const closing = d.close()
    held.open()
    expect(await (await slow).body.text()).toBe('slow')
    expect(await (await waiting).body.text()).toBe('/w')
    await withDeadline(closing, 5_000, 'close()')

    const b = await server('b')
    const heldB = holdSlow(b.s)
    const s2 = setup({ connections: 1 })
    s2.dir.set('payments', [b.s.instance()])
    const slowB = errorOf(request('http://payments/slow', { dispatcher: s2.d }))
    await seen(b.s, 1, 'slow request at b')
    const waitingB = errorOf(request('http://payments/w', { dispatcher: s2.d }))
    await withDeadline(s2.d.destroy(), 5_000, 'destroy()')
    expect(await withDeadline(slowB, 5_000, 'running request')).toBeInstanceOf(Error)
    expect(await withDeadline(waitingB, 5_000, 'waiting request')).toBeInstanceOf(Error)
    expect(s2.dir.load.record(b.s.instance().key).inflight).toBe(0)
    expect(b.s.seen.map((x) => x.url)).toEqual(['/slow'])
    heldB.open()
  })

  it('closes a removed instance once its last request completes, with no failed request', async () => {
    const a = await server('a')
    const b = await server('b')
    const held = holdSlow(a.s)
    const { dir, d } = setup({ connections: 4 })
    dir.set('payments', [a.s.instance(), b.s.instance()])
    // Round-robin from 0: a, b, then a again for the slow one.
    expect(await (await request('http://payments/1', { dispatcher: d })).body.text()).toBe('/1')
    expect(await (await request('http://payments/2', { dispatcher: d })).body.text()).toBe('b')
    const slow = request('http://payments/slow', { dispatcher: d })
    await seen(a.s, 2, 'slow request at a')
    dir.set('payments', [b.s.instance()])
    for (let i = 0; i < 10; i++)
      expect(await (await request('http://payments/n', { dispatcher: d })).body.text()).toBe('b')
    expect(a.s.seen.map((x) => x.url)).toEqual(['/1', '/slow'])
    expect(a.open()).toBe(1) // kept for the running request
    held.open()
    expect(await (await slow).body.text()).toBe('slow')
    await eventually(() => (a.open() === 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'removed instance connection closed',
    })
    expect(d.poolCount).toBe(1)
  })

  it('reconnects when the instance closes every connection after its response', async () => {
    const { s, connections } = await server('a')
    s.behaviour = (req, res) => {
      res.setHeader('connection', 'close')
      res.end(req.url)
    }
    const { dir, d } = setup({ connections: 2 })
    dir.set('payments', [s.instance()])
    for (let i = 0; i < 5; i++)
      expect(await (await request(`http://payments/s${i}`, { dispatcher: d })).body.text()).toBe(
        `/s${i}`,
      )
    const bodies = await concurrent(d, 'c', 10)
    expect(bodies).toEqual(Array.from({ length: 10 }, (_, i) => `/c${i}`))
    expect(connections()).toBe(15) // one per request: none was sent on a closing socket
    expect(dir.load.record(s.instance().key).inflight).toBe(0)
  })

  it('frees the connection of a request that timed out waiting for headers', async () => {
    const { s } = await server('a')
    s.behaviour = (req, res) => {
      if (req.url !== '/hang') res.end(req.url)
    }
    const { dir, d } = setup({ connections: 1, pool: { headersTimeout: 200 } })
    dir.set('payments', [s.instance()])
    const err = await withDeadline(
      errorOf(request('http://payments/hang', { dispatcher: d })),
      5_000,
      'timed-out request',
    )
    expect((err as { code?: string }).code).toBe('UND_ERR_HEADERS_TIMEOUT')
    expect(await (await request('http://payments/ok', { dispatcher: d })).body.text()).toBe('/ok')
    expect(dir.load.record(s.instance().key).inflight).toBe(0)
  })

  it('carries up to `pipelining` requests per connection', async () => {
    const { s, connections } = await server('a')
    s.behaviour = (req, res) => {
      res.end(req.url)
    }
    const { dir, d } = setup({ connections: 1, pipelining: 3 })
    dir.set('payments', [s.instance()])
    const bodies = await concurrent(d, 'p', 7)
    expect(bodies).toEqual(Array.from({ length: 7 }, (_, i) => `/p${i}`))
    expect(connections()).toBe(1)
  })

  it('closes the connections of a pool left idle, and dials again on the next request', async () => {
    const { s, connections, open } = await server('a')
    s.behaviour = (req, res) => {
      res.end(req.url)
    }
    const clock = new FakeClock()
    const { dir, d } = setup({ connections: 4, idleTimeoutMs: 60_000 }, clock)
    dir.set('payments', [s.instance()])
    expect(await concurrent(d, 'i', 3)).toEqual(['/i0', '/i1', '/i2'])
    expect(d.stats('payments').instances[0]?.connections).toBe(3)
    clock.advance(60_000) // the sweep clears the used flag
    expect(d.poolCount).toBe(1)
    clock.advance(60_000) // unused for a whole interval: retired
    expect(d.poolCount).toBe(0)
    await eventually(() => (open() === 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'idle connections closed',
    })
    expect(d.stats('payments').instances[0]?.connections).toBe(0)
    expect(await (await request('http://payments/again', { dispatcher: d })).body.text()).toBe(
      '/again',
    )
    expect(connections()).toBe(4)
    expect(d.poolCount).toBe(1)
  })

  it('falls back to undici Pool for Pool-only options, with the same bound and stats', async () => {
    // clientTtl is a Pool option: the instance gets an undici Pool, which queues on its own.
    const { s, connections, held, d, slow } = await oneBusyConnection({
      pool: { clientTtl: 60_000 },
    })
    const waiting = request('http://payments/w', { dispatcher: d })
    expect(d.stats('payments').instances[0]).toMatchObject({
      inflight: 2,
      queued: 1,
      connections: 1,
    })
    held.open()
    expect(await (await slow).body.text()).toBe('slow')
    expect(await (await waiting).body.text()).toBe('/w')
    expect(s.seen.map((x) => x.url)).toEqual(['/slow', '/w'])
    expect(connections()).toBe(1)
  })
})
