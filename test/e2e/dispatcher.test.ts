import { Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import {
  Agent,
  buildConnector,
  fetch as undiciFetch,
  Pool,
  request,
  stream,
  type Dispatcher,
} from 'undici'
import { Writable } from 'node:stream'
import { WayfindDispatcher } from '../../src/dispatcher/dispatcher.js'
import type { DispatcherOptions } from '../../src/dispatcher/options.js'
import { ErrorCode, isWayfindError } from '../../src/errors.js'
import { createEvents } from '../../src/events.js'
import { FakeClock } from '../support/fake-clock.js'
import { eventually, waitFor, withDeadline } from '../support/wait.js'
import { deadInstance, FakeDirectory, gate, TestServer } from './dispatcher-support.js'

const cleanup: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined)
})

async function servers(...ids: string[]): Promise<TestServer[]> {
  const list = await Promise.all(ids.map((id) => new TestServer(id).listen()))
  for (const s of list) cleanup.push(() => s.kill())
  return list
}

function setup(
  opts: DispatcherOptions = {},
  dirOpts: ConstructorParameters<typeof FakeDirectory>[0] = {},
) {
  const dir = new FakeDirectory(dirOpts)
  const hub = createEvents()
  const d = new WayfindDispatcher(dir, opts, hub)
  cleanup.push(() => d.destroy())
  return { dir, hub, d }
}

function inflight(dir: FakeDirectory, key: string): number {
  return dir.load.record(key).inflight
}

describe('routing and the Host header', () => {
  it('keeps the logical Host for every header shape, and a user-set Host wins', async () => {
    const [a] = await servers('a')
    const { dir, d } = setup()
    dir.set('payments', [a!.instance()])
    const shapes: Dispatcher.DispatchOptions['headers'][] = [
      undefined,
      { 'x-shape': 'object' },
      ['x-shape', 'flat'],
      new Map([['x-shape', 'iterable']]),
    ]
    for (const headers of shapes) {
      const res = await request(
        'http://payments/x',
        headers === undefined ? { dispatcher: d } : { dispatcher: d, headers },
      )
      expect(await res.body.text()).toBe('a')
    }
    await (
      await request('http://payments/x', { dispatcher: d, headers: { Host: 'custom.example' } })
    ).body.text()
    await (
      await request('http://payments/x', { dispatcher: d, headers: ['HOST', 'flat.example'] })
    ).body.text()
    await (await request('http://payments:8080/x', { dispatcher: d })).body.text()
    expect(a!.seen.map((s) => s.host)).toEqual([
      'payments',
      'payments',
      'payments',
      'payments',
      'custom.example',
      'flat.example',
      'payments:8080',
    ])
  })

  it('calls a pool.connect function with the instance address, once per connection', async () => {
    const [a, b] = await servers('a', 'b')
    const dialed: string[] = []
    const real = buildConnector({})
    const { dir, d } = setup({
      connections: 1,
      pool: {
        connect: (o, cb) => {
          dialed.push(`${o.hostname}:${o.port}`)
          real(o, cb)
        },
      },
    })
    dir.set('payments', [a!.instance(), b!.instance()])
    const bodies: string[] = []
    for (let i = 0; i < 6; i++)
      bodies.push(await (await request('http://payments/x', { dispatcher: d })).body.text())
    expect(bodies.sort()).toEqual(['a', 'a', 'a', 'b', 'b', 'b'])
    expect(dialed.sort()).toEqual([`127.0.0.1:${a!.port}`, `127.0.0.1:${b!.port}`].sort())
    expect(a!.seen.every((s) => s.host === 'payments')).toBe(true)
  })

  it('works with undici fetch, Node global fetch, and stream()', async () => {
    const [a] = await servers('a')
    const { dir, d } = setup()
    dir.set('payments', [a!.instance()])
    const r1 = await undiciFetch('http://payments/u', { dispatcher: d })
    expect(await r1.text()).toBe('a')
    // Node 20's bundled fetch (undici 6) accepts a v7 dispatcher
    // (docs/design/dispatch.md#undici-v7-and-node-20).
    const r2 = await globalThis.fetch('http://payments/g', {
      dispatcher: d,
    } as unknown as RequestInit)
    expect(await r2.text()).toBe('a')
    let streamed = ''
    await stream(
      'http://payments/s',
      { dispatcher: d, opaque: null, method: 'GET' },
      () =>
        new Writable({
          write(chunk: Buffer, _e, cb) {
            streamed += chunk.toString()
            cb()
          },
        }),
    )
    expect(streamed).toBe('a')
    expect(a!.seen.map((s) => [s.url, s.host])).toEqual([
      ['/u', 'payments'],
      ['/g', 'payments'],
      ['/s', 'payments'],
    ])
    expect(inflight(dir, a!.instance().key)).toBe(0)
  })

  it('passes non-service origins through to the fallback', async () => {
    const [a] = await servers('a')
    const { d } = setup()
    const res = await request(`http://127.0.0.1:${a!.port}/direct`, { dispatcher: d })
    expect(await res.body.text()).toBe('a')
    expect(a!.seen[0]!.host).toBe(`127.0.0.1:${a!.port}`)
    expect(d.poolCount).toBe(0)
  })

  it('works as an interceptor composed over an Agent', async () => {
    const [a] = await servers('a')
    const { dir, d } = setup()
    dir.set('payments', [a!.instance()])
    const agent = new Agent()
    cleanup.push(() => agent.close())
    const composed = agent.compose(d.interceptor())
    expect(await (await request('http://payments/i', { dispatcher: composed })).body.text()).toBe(
      'a',
    )
    expect(
      await (await request(`http://127.0.0.1:${a!.port}/p`, { dispatcher: composed })).body.text(),
    ).toBe('a')
    expect(a!.seen.map((s) => s.host)).toEqual(['payments', `127.0.0.1:${a!.port}`])
    expect(inflight(dir, a!.instance().key)).toBe(0)
  })
})

describe('in-flight accounting', () => {
  it('returns to 0 after end, error, abort and an unconsumed body', async () => {
    const [a] = await servers('a')
    const { dir, d } = setup({ retry: false })
    const key = a!.instance().key
    dir.set('payments', [a!.instance()])
    // end
    const held = gate()
    a!.behaviour = (req, res) => {
      if (req.url === '/hold') void held.wait.then(() => res.end('late'))
      else if (req.url === '/cut') {
        res.writeHead(200, { 'content-length': '100' })
        res.write('x')
        setImmediate(() => res.socket?.destroy())
      } else if (req.url === '/big') {
        res.writeHead(200)
        res.write(Buffer.alloc(64 * 1024))
        res.end(Buffer.alloc(64 * 1024))
      } else res.end('ok')
    }
    const pending = request('http://payments/hold', { dispatcher: d })
    await eventually(() => (a!.seen.length > 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'request to arrive',
    })
    expect(inflight(dir, key)).toBe(1)
    held.open()
    expect(await (await pending).body.text()).toBe('late')
    expect(inflight(dir, key)).toBe(0)
    // error mid-body
    const cut = await request('http://payments/cut', { dispatcher: d })
    await expect(cut.body.text()).rejects.toThrow()
    expect(inflight(dir, key)).toBe(0)
    // abort after headers
    const ac = new AbortController()
    const big = await request('http://payments/big', { dispatcher: d, signal: ac.signal })
    expect(inflight(dir, key)).toBe(1)
    ac.abort()
    await expect(big.body.text()).rejects.toThrow()
    expect(inflight(dir, key)).toBe(0)
    // unconsumed body, released with dump()/destroy() and fetch cancel()
    const u1 = await request('http://payments/big', { dispatcher: d })
    await u1.body.dump()
    const u2 = await request('http://payments/big', { dispatcher: d })
    const closed = new Promise((r) => u2.body.once('close', r))
    u2.body.destroy()
    await closed
    const u3 = await undiciFetch('http://payments/big', { dispatcher: d })
    await u3.body?.cancel()
    await eventually(() => (inflight(dir, key) === 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'in-flight back to 0',
    })
    expect(inflight(dir, key)).toBe(0)
  })
})

describe('retries to another instance', () => {
  it('re-sends a POST with a stream body to another instance when connect is refused', async () => {
    const [b] = await servers('b')
    const dead = await deadInstance()
    const { dir, d } = setup()
    dir.set('payments', [dead, b!.instance()]) // round-robin starts at the dead one
    const res = await request('http://payments/pay', {
      dispatcher: d,
      method: 'POST',
      body: Readable.from(['chunk-1,', 'chunk-2']),
    })
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe('b')
    expect(b!.seen).toEqual([
      { method: 'POST', url: '/pay', host: 'payments', body: 'chunk-1,chunk-2' },
    ])
    expect(inflight(dir, dead.key)).toBe(0)
    expect(dir.load.record(dead.key).consecutiveFailures).toBe(1)
  })

  it('re-sends fetch POST bodies (undici and Node fetch) when the first instance refuses', async () => {
    const [b] = await servers('b')
    const dead = await deadInstance()
    const { dir, d } = setup()
    for (const f of [undiciFetch, globalThis.fetch] as const) {
      dir.set('payments', [])
      dir.set('payments', [dead, b!.instance()]) // a fresh round-robin picker starts at the dead one
      const res = await (f as typeof undiciFetch)('http://payments/f', {
        method: 'POST',
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('streamed'))
            c.close()
          },
        }),
        duplex: 'half',
        dispatcher: d,
      })
      expect(await res.text()).toBe('b')
    }
    expect(b!.seen.map((s) => s.body)).toEqual(['streamed', 'streamed'])
  })

  it('fails with the connect error once every instance refused', async () => {
    const dead1 = await deadInstance('payments', 'd1')
    const dead2 = await deadInstance('payments', 'd2')
    const { dir, d } = setup()
    dir.set('payments', [dead1, dead2])
    const err: unknown = await request('http://payments/x', {
      dispatcher: d,
      method: 'POST',
      body: 'x',
    }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect((err as { code?: string }).code).toBe('ECONNREFUSED')
    expect(inflight(dir, dead1.key) + inflight(dir, dead2.key)).toBe(0)
    expect(
      dir.load.record(dead1.key).consecutiveFailures +
        dir.load.record(dead2.key).consecutiveFailures,
    ).toBe(2)
  })

  it('retries an idempotent request after 503 on another instance, but never a POST', async () => {
    const [a, b] = await servers('a', 'b')
    a!.behaviour = (_req, res) => {
      res.writeHead(503, { 'retry-after': '0' })
      res.end('busy')
    }
    const { dir, d } = setup()
    dir.set('payments', [a!.instance(), b!.instance()])
    const get = await request('http://payments/g', { dispatcher: d })
    expect(get.statusCode).toBe(200)
    expect(await get.body.text()).toBe('b')
    // round-robin is back on a: a POST gets the 503 as is
    const post = await request('http://payments/p', { dispatcher: d, method: 'POST', body: 'x' })
    expect(post.statusCode).toBe(503)
    expect(await post.body.text()).toBe('busy')
    expect(a!.seen.map((s) => s.method)).toEqual(['GET', 'POST'])
    expect(b!.seen.map((s) => s.method)).toEqual(['GET'])
  })

  it('serves every idempotent request while an instance is killed under 64-way load', async () => {
    const [a, b, c] = await servers('a', 'b', 'c')
    const { dir, d } = setup({ connections: 16 })
    dir.set('payments', [a!.instance(), b!.instance(), c!.instance()])
    let done = 0
    let killed: Promise<void> | undefined
    const failures: unknown[] = []
    const worker = async (): Promise<void> => {
      while (done < 2_000) {
        try {
          const res = await request('http://payments/w', { dispatcher: d })
          await res.body.text()
          if (res.statusCode !== 200) failures.push(res.statusCode)
        } catch (err) {
          failures.push(err)
        }
        done++
        if (done === 500) killed = b!.kill()
      }
    }
    await withDeadline(Promise.all(Array.from({ length: 64 }, worker)), 50_000, '64 workers')
    await killed
    expect(failures).toEqual([])
    expect(b!.seen.length).toBeGreaterThan(0)
    for (const s of [a, b, c]) expect(inflight(dir, s!.instance().key)).toBe(0)
  })
})

describe('membership owns the pools', () => {
  it('closes a removed instance pool while its last request completes, with no failed request', async () => {
    const [a, b] = await servers('a', 'b')
    const pools = new Map<string, Pool>()
    const { dir, d } = setup({
      poolFactory: (origin, o, instance) => {
        const p = new Pool(origin, o)
        pools.set(instance.key, p)
        return p
      },
    })
    dir.set('payments', [a!.instance(), b!.instance()])
    const held = gate()
    a!.behaviour = (req, res) => {
      if (req.url === '/slow') void held.wait.then(() => res.end('a-late'))
      else res.end('a')
    }
    const slow = request('http://payments/slow', { dispatcher: d }) // round-robin: a
    await eventually(() => (a!.seen.length > 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'slow request at a',
    })
    const poolA = pools.get(a!.instance().key)!
    dir.set('payments', [b!.instance()])
    expect(poolA.closed).toBe(true)
    expect(poolA.destroyed).toBe(false)
    for (let i = 0; i < 20; i++)
      expect(await (await request('http://payments/n', { dispatcher: d })).body.text()).toBe('b')
    held.open()
    expect(await (await slow).body.text()).toBe('a-late')
    expect(d.poolCount).toBe(1)
    expect(dir.load.has(a!.instance().key)).toBe(false)
  })

  it('waits for a first instance, then fails with ResolveTimeoutError through the handler', async () => {
    const [a] = await servers('a')
    const { dir, d } = setup({}, { resolveTimeoutMs: 300 })
    const waiting = request('http://payments/w', { dispatcher: d })
    dir.set('payments', [a!.instance()])
    expect(await (await waiting).body.text()).toBe('a')
    const err: unknown = await request('http://orders/x', { dispatcher: d }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(isWayfindError(err) && err.code).toBe(ErrorCode.RESOLVE_TIMEOUT)
  })

  it('a caller abort stops the wait for instances', async () => {
    const { d } = setup({}, { resolveTimeoutMs: 30_000 })
    const ac = new AbortController()
    const p = request('http://orders/x', { dispatcher: d, signal: ac.signal }).then(
      () => undefined,
      (e: unknown) => e,
    )
    ac.abort(new Error('caller gave up'))
    const err = await withDeadline(p, 2_000, 'abort to settle')
    expect((err as Error).message).toContain('caller gave up')
  })

  it('rejects requests after close() with a typed error', async () => {
    const { d } = setup()
    await d.close()
    const err: unknown = await request('http://payments/x', { dispatcher: d }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(isWayfindError(err) && err.code).toBe(ErrorCode.CLOSED)
  })
})

describe('outlier ejection', () => {
  it('returns an ejected instance after 30 s of a fake clock, and it serves again', async () => {
    const [a, b] = await servers('a', 'b')
    let healthy = false
    a!.behaviour = (_req, res) => {
      res.statusCode = healthy ? 200 : 500
      res.end('a')
    }
    const clock = new FakeClock()
    const { dir, hub, d } = setup({ retry: false }, { clock })
    dir.set('payments', [a!.instance(), b!.instance()])
    const events: string[] = []
    hub.api.on('eject', (e) => events.push(`eject ${e.instance.id}`))
    hub.api.on('uneject', (e) => events.push(`uneject ${e.instance.id}`))
    for (let i = 0; i < 10; i++)
      await (await request('http://payments/e', { dispatcher: d })).body.text()
    expect(events).toEqual(['eject a'])
    healthy = true
    clock.advance(29_999)
    for (let i = 0; i < 6; i++)
      expect(await (await request('http://payments/e', { dispatcher: d })).body.text()).toBe('b')
    clock.advance(1)
    expect(events).toEqual(['eject a', 'uneject a'])
    const bodies = new Set<string>()
    for (let i = 0; i < 6; i++)
      bodies.add(await (await request('http://payments/e', { dispatcher: d })).body.text())
    expect(bodies).toEqual(new Set(['a', 'b']))
    expect(d.stats('payments').instances.find((i) => i.id === 'a')).toMatchObject({
      ejected: false,
      consecutiveFailures: 0,
    })
  })

  it('ejects an instance after 5 consecutive 5xx, emits eject, and routes around it', async () => {
    const [a, b] = await servers('a', 'b')
    a!.behaviour = (_req, res) => {
      res.statusCode = 500
      res.end('boom')
    }
    const { dir, hub, d } = setup({ retry: false })
    dir.set('payments', [a!.instance(), b!.instance()])
    const ejected = waitFor(hub.api, 'eject', () => true, 5_000)
    for (let i = 0; i < 10; i++)
      await (await request('http://payments/e', { dispatcher: d })).body.text()
    const ev = await ejected
    expect(ev.instance.id).toBe('a')
    expect(ev.durationMs).toBe(30_000)
    expect(a!.seen.length).toBe(5)
    for (let i = 0; i < 10; i++)
      expect(await (await request('http://payments/e', { dispatcher: d })).body.text()).toBe('b')
    const st = d.stats('payments')
    expect(st.ejected).toBe(1)
    expect(st.panic).toBe(false)
    expect(st.instances.find((i) => i.id === 'a')).toMatchObject({
      ejected: true,
      ejectCount: 1,
      inflight: 0,
    })
  })
})

describe('lifecycle and observability', () => {
  it('close() lets an in-flight request finish; destroy() aborts one', async () => {
    const [a] = await servers('a')
    const held = gate()
    a!.behaviour = (_req, res) => {
      void held.wait.then(() => res.end('done'))
    }
    const { dir, d } = setup()
    dir.set('payments', [a!.instance()])
    const inFlight = request('http://payments/c', { dispatcher: d })
    await eventually(() => (a!.seen.length > 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'request at a',
    })
    let closed = false
    const closing = d.close().then(() => {
      closed = true
    })
    expect(d.closed).toBe(true)
    held.open()
    expect(await (await inFlight).body.text()).toBe('done')
    await withDeadline(closing, 5_000, 'close()')
    expect(closed).toBe(true)

    const [b] = await servers('b')
    b!.behaviour = () => {
      /* never answers */
    }
    const s2 = setup()
    s2.dir.set('payments', [b!.instance()])
    const stuck = request('http://payments/d', { dispatcher: s2.d }).then(
      () => undefined,
      (e: unknown) => e,
    )
    await eventually(() => (b!.seen.length > 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: 'request at b',
    })
    await s2.d.destroy()
    expect(await withDeadline(stuck, 5_000, 'aborted request')).toBeInstanceOf(Error)
    expect(inflight(s2.dir, b!.instance().key)).toBe(0)
  })

  it('publishes wayfind:pick and wayfind:retry on diagnostics_channel', async () => {
    const diagnostics = await import('node:diagnostics_channel')
    const [b] = await servers('b')
    const dead = await deadInstance()
    const { dir, d } = setup()
    dir.set('payments', [dead, b!.instance()])
    const picks: string[] = []
    const retries: { reason: string; delayMs: number }[] = []
    const onPick = (m: unknown): void => {
      picks.push((m as { instance: { id: string } }).instance.id)
    }
    const onRetry = (m: unknown): void => {
      retries.push(m as { reason: string; delayMs: number })
    }
    diagnostics.subscribe('wayfind:pick', onPick)
    diagnostics.subscribe('wayfind:retry', onRetry)
    try {
      await (await request('http://payments/o', { dispatcher: d })).body.text()
    } finally {
      diagnostics.unsubscribe('wayfind:pick', onPick)
      diagnostics.unsubscribe('wayfind:retry', onRetry)
    }
    expect(picks).toEqual(['dead', 'b'])
    expect(retries).toMatchObject([{ reason: 'before-send', delayMs: 0 }])
  })
})
