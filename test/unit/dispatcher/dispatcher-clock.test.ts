/**
 * The dispatcher's timers (idle pools, drain timeout, ejection, backoff) driven by a fake clock,
 * over stub pools the test answers by hand: no network, no sleeps.
 */
import { describe, expect, it } from 'vitest'
import { Dispatcher } from 'undici'
import { leastLoaded } from '../../../src/balancer/least-loaded.js'
import { roundRobin } from '../../../src/balancer/round-robin.js'
import type { Strategy } from '../../../src/balancer/strategy.js'
import { WayfindDispatcher } from '../../../src/dispatcher/dispatcher.js'
import type { DispatcherOptions } from '../../../src/dispatcher/options.js'
import { createEvents, type EjectionEvent } from '../../../src/events.js'
import { createInstance, type Instance } from '../../../src/instance.js'
import { FakeDirectory } from '../../e2e/dispatcher-support.js'
import { FakeClock } from '../balancer/helpers.js'

class StubPool extends Dispatcher {
  readonly origin: string
  readonly requests: { opts: Dispatcher.DispatchOptions; handler: Dispatcher.DispatchHandler }[] =
    []
  closeCalled = false
  destroyCalled = false
  #finishClose: () => void = () => undefined
  readonly #closed = new Promise<void>((r) => {
    this.#finishClose = r
  })
  constructor(origin: string) {
    super()
    this.origin = origin
  }
  override dispatch(
    opts: Dispatcher.DispatchOptions,
    handler: Dispatcher.DispatchHandler,
  ): boolean {
    this.requests.push({ opts, handler })
    return true
  }
  override close(): Promise<void> {
    this.closeCalled = true
    return this.#closed
  }
  override destroy(): Promise<void> {
    this.destroyCalled = true
    this.#finishClose()
    return Promise.resolve()
  }
  finishClose(): void {
    this.#finishClose()
  }
}

/* eslint-disable @typescript-eslint/no-deprecated -- the stub plays undici's side of the legacy API */
function respond(h: Dispatcher.DispatchHandler, status: number, headers: string[] = []): void {
  h.onConnect?.(() => undefined)
  h.onHeaders?.(
    status,
    headers.map((x) => Buffer.from(x)),
    () => undefined,
    '',
  )
  h.onData?.(Buffer.from('body'))
  h.onComplete?.(null)
}

/** Answers like respond(), `ms` after the request was written (undici's onConnect). */
function respondAfter(h: Dispatcher.DispatchHandler, clock: FakeClock, ms: number): void {
  h.onConnect?.(() => undefined)
  clock.advance(ms)
  h.onHeaders?.(200, [], () => undefined, '')
  h.onComplete?.(null)
}

function recorder() {
  const events: string[] = []
  const state: { abort?: (err?: Error) => void } = {}
  const handler: Dispatcher.DispatchHandler = {
    onConnect: (abort: (err?: Error) => void) => {
      events.push('connect')
      state.abort = abort
    },
    onHeaders: (status: number) => {
      events.push(`headers ${status}`)
      return true
    },
    onData: () => true,
    onComplete: () => {
      events.push('complete')
    },
    onError: (err: Error) => {
      events.push(`error ${(err as { code?: string }).code ?? err.message}`)
    },
  }
  return { events, handler, state }
}
/* eslint-enable @typescript-eslint/no-deprecated */

function setup(options: DispatcherOptions = {}, strategy: Strategy = roundRobin()) {
  const clock = new FakeClock()
  const dir = new FakeDirectory({ clock, strategy })
  const hub = createEvents()
  const ejections: [string, EjectionEvent][] = []
  hub.api.on('eject', (e) => ejections.push(['eject', e]))
  hub.api.on('uneject', (e) => ejections.push(['uneject', e]))
  const pools: StubPool[] = []
  const d = new WayfindDispatcher(
    dir,
    {
      ...options,
      poolFactory: (_origin, _options, instance) => {
        const p = new StubPool(`http://${instance.host}:${instance.port}`)
        pools.push(p)
        return p
      },
    },
    hub,
  )
  const list: Instance[] = [0, 1].map((i) =>
    createInstance({
      id: `i${i}`,
      key: `svc/i${i}`,
      service: 'svc',
      host: '10.0.0.1',
      port: 8000 + i,
    }),
  )
  dir.set('svc', list)
  const send = (method: Dispatcher.HttpMethod = 'GET') => {
    const r = recorder()
    d.dispatch({ origin: 'http://svc', path: '/', method }, r.handler)
    return r
  }
  const poolOf = (i: number) => pools.filter((p) => p.origin === `http://10.0.0.1:${8000 + i}`)
  return { clock, dir, d, pools, list, send, poolOf, ejections }
}

describe('WayfindDispatcher timers (fake clock)', () => {
  it('times every request to an idle instance; 1 in 8 busy ones for least-loaded, 1 in 16 otherwise', async () => {
    // Request k takes 100 + k ms: each timed one is a new peak, so the estimate equals its
    // duration (and never the 30 ms default).
    const timedOf32 = async (strategy: Strategy, busy: boolean) => {
      const { clock, d, send, pools } = setup({}, strategy)
      if (busy) {
        // One request held open on each instance keeps both busy for the whole run.
        send()
        send()
      }
      const held = pools.flatMap((p) => p.requests).length
      const timed = new Map<string, number>()
      const sent = new Map<string, number>()
      for (let k = 1; k <= 32; k++) {
        const before = pools.map((p) => p.requests.length)
        send()
        const pool = pools.find((p, i) => p.requests.length > (before[i] ?? 0))!
        respondAfter(pool.requests.at(-1)!.handler, clock, 100 + k)
        const stats = d.stats('svc').instances.find((i) => pool.origin.endsWith(`:${i.port}`))!
        sent.set(stats.id, (sent.get(stats.id) ?? 0) + 1)
        if (stats.latencyMs === 100 + k) timed.set(stats.id, (timed.get(stats.id) ?? 0) + 1)
      }
      expect(pools.flatMap((p) => p.requests).length).toBe(held + 32)
      await d.destroy()
      const count = (id: string) => timed.get(id) ?? 0
      return { timed, sent, count, total: count('i0') + count('i1') }
    }
    // Idle instances: every request is timed, whatever the strategy.
    expect((await timedOf32(leastLoaded(), false)).total).toBe(32)
    expect((await timedOf32(roundRobin(), false)).total).toBe(32)
    // Busy: the 8th, 16th... request of each instance is timed for least-loaded...
    const ll = await timedOf32(leastLoaded(), true)
    for (const id of ['i0', 'i1']) expect(ll.count(id)).toBe(Math.floor((ll.sent.get(id) ?? 0) / 8))
    expect(ll.total).toBeGreaterThanOrEqual(3)
    // ...and the 16th for a strategy that never reads latency: round-robin sends 16 to each.
    const rr = await timedOf32(roundRobin(), true)
    expect([...rr.timed.entries()].sort()).toEqual([
      ['i0', 1],
      ['i1', 1],
    ])
  })

  it('times from the moment the request is written, not while it waits for a connection', async () => {
    const { clock, d, send, pools } = setup({}, leastLoaded())
    send()
    clock.advance(500) // queued in the pool: our own wait, already counted as in-flight
    respondAfter(pools.flatMap((p) => p.requests)[0]!.handler, clock, 7)
    expect(d.stats('svc').instances.map((i) => i.latencyMs)).toContain(7)
    await d.destroy()
  })

  it('tells pickers the per-instance capacity: connections × pipelining, none over HTTP/2', async () => {
    const capacityOf = async (options: DispatcherOptions) => {
      const seen: (number | undefined)[] = []
      const rr = roundRobin()
      const spy: Strategy = {
        name: 'spy',
        createPicker: (instances, ctx) => {
          const inner = rr.createPicker(instances, ctx)
          return {
            instances,
            usesLatency: false,
            pick: (pc) => {
              seen.push(pc?.capacity)
              return inner.pick(pc)
            },
          }
        },
      }
      const { d, send } = setup(options, spy)
      send()
      await d.destroy()
      return seen
    }
    expect(await capacityOf({ connections: 12, pipelining: 2 })).toEqual([24])
    expect(await capacityOf({})).toEqual([32])
    expect(await capacityOf({ connections: 12, pool: { allowH2: true } })).toEqual([0])
  })

  it('closes an idle pool after the idle timeout and reopens on demand', async () => {
    const { clock, d, send, poolOf } = setup({ idleTimeoutMs: 1_000 })
    const r = send()
    respond(poolOf(0)[0]!.requests[0]!.handler, 200)
    expect(r.events).toEqual(['connect', 'headers 200', 'complete'])
    clock.advance(1_000) // first sweep: used during the interval
    expect(poolOf(0)[0]!.closeCalled).toBe(false)
    clock.advance(1_000) // second sweep: unused for a whole interval
    expect(poolOf(0)[0]!.closeCalled).toBe(true)
    expect(d.poolCount).toBe(0)
    send()
    send()
    expect(poolOf(0)).toHaveLength(2)
    expect(poolOf(0)[1]!.requests).toHaveLength(1)
    await d.destroy()
  })

  it('destroys a removed instance pool after the drain timeout if it has not closed', async () => {
    const { clock, dir, d, list, send, poolOf } = setup({ drainTimeoutMs: 5_000 })
    send()
    const pool = poolOf(0)[0]!
    dir.set('svc', [list[1]!])
    expect(pool.closeCalled).toBe(true)
    clock.advance(4_999)
    expect(pool.destroyCalled).toBe(false)
    clock.advance(1)
    expect(pool.destroyCalled).toBe(true)
    await d.destroy()
  })

  it('does not destroy a removed pool that drained in time', async () => {
    const { clock, dir, d, list, send, poolOf } = setup({ drainTimeoutMs: 5_000 })
    send()
    const pool = poolOf(0)[0]!
    dir.set('svc', [list[1]!])
    pool.finishClose()
    await Promise.resolve()
    await Promise.resolve()
    clock.advance(10_000)
    expect(pool.destroyCalled).toBe(false)
    await d.destroy()
  })

  it('ejects after 5 consecutive 5xx, routes around, and returns the instance after 30 s', async () => {
    const { clock, d, send, poolOf, ejections, dir, list } = setup({ retry: false })
    // Round-robin alternates i0, i1; i0 always fails.
    for (let k = 0; k < 10; k++) {
      send()
      const p = k % 2 === 0 ? poolOf(0)[0]! : poolOf(1)[0]!
      respond(p.requests.at(-1)!.handler, k % 2 === 0 ? 500 : 200)
    }
    expect(ejections.map(([t, e]) => [t, e.instance.id, e.durationMs])).toEqual([
      ['eject', 'i0', 30_000],
    ])
    expect(d.stats('svc').instances[0]).toMatchObject({
      ejected: true,
      ejectedForMs: 30_000,
      inflight: 0,
      consecutiveFailures: 5,
    })
    const before = poolOf(0)[0]!.requests.length
    for (let k = 0; k < 6; k++) respond((send(), poolOf(1)[0]!.requests.at(-1)!.handler), 200)
    expect(poolOf(0)[0]!.requests.length).toBe(before)
    clock.advance(30_000)
    expect(ejections.at(-1)![0]).toBe('uneject')
    expect(dir.load.record(list[0]!.key).consecutiveFailures).toBe(0)
    send()
    send()
    expect(poolOf(0)[0]!.requests.length).toBe(before + 1)
    await d.destroy()
  })

  it('swallows a 503 for GET and retries on the other instance after Retry-After', async () => {
    const { clock, d, send, poolOf, dir, list } = setup()
    const r = send()
    respond(poolOf(0)[0]!.requests[0]!.handler, 503, ['retry-after', '2'])
    expect(r.events).toEqual(['connect'])
    expect(dir.load.record(list[0]!.key).inflight).toBe(0)
    clock.advance(1_999)
    expect(poolOf(1)).toHaveLength(0)
    clock.advance(1)
    const retry = poolOf(1)[0]!.requests[0]!
    expect(retry.opts.origin).toBe('http://svc') // the caller's options, untouched
    respond(retry.handler, 200)
    expect(r.events).toEqual(['connect', 'headers 200', 'complete'])
    expect(dir.load.record(list[1]!.key).inflight).toBe(0)
    // A POST is never re-sent after it was written.
    const p = send('POST')
    respond(poolOf(0)[0]!.requests[1]!.handler, 503, ['retry-after', '0'])
    expect(p.events).toEqual(['connect', 'headers 503', 'complete'])
    await d.destroy()
  })

  it('a caller abort during the retry backoff ends the request at once; nothing is sent later', async () => {
    const { clock, d, send, poolOf } = setup()
    const r = send()
    respond(poolOf(0)[0]!.requests[0]!.handler, 503, ['retry-after', '2'])
    r.state.abort?.(new Error('caller gave up'))
    expect(r.events).toEqual(['connect', 'error caller gave up'])
    clock.advance(10_000)
    expect(poolOf(1)).toHaveLength(0)
    expect(clock.pending).toBe(1) // only the idle-pool sweep
    await d.destroy()
  })

  it('re-sends at once to the other instance when the first fails before sending', async () => {
    const { d, send, poolOf, dir, list } = setup()
    const r = send('POST')
    const err = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    poolOf(0)[0]!.requests[0]!.handler.onError?.(err) // eslint-disable-line @typescript-eslint/no-deprecated
    expect(poolOf(1)[0]!.requests).toHaveLength(1)
    respond(poolOf(1)[0]!.requests[0]!.handler, 201)
    expect(r.events).toEqual(['connect', 'headers 201', 'complete'])
    for (const i of list) expect(dir.load.record(i.key).inflight).toBe(0)
    await d.destroy()
  })

  it('leaves no timer behind after close, and nothing fires', async () => {
    const { clock, d, send, poolOf, ejections } = setup({ retry: { backoff: { initialMs: 100 } } })
    for (let k = 0; k < 10; k++) {
      send()
      respond(poolOf(k % 2)[0]!.requests.at(-1)!.handler, k % 2 === 0 ? 500 : 200)
    }
    expect(ejections).toHaveLength(1) // i0 ejected: its return timer is pending
    const r = send() // goes to i1
    respond(poolOf(1)[0]!.requests.at(-1)!.handler, 502) // swallowed: a backoff timer is pending
    expect(r.events).toEqual(['connect'])
    expect(clock.pending).toBeGreaterThanOrEqual(3) // return, backoff, idle sweep
    const closing = d.close()
    for (const p of poolOf(0).concat(poolOf(1))) p.finishClose()
    await closing
    expect(r.events).toEqual(['connect', 'error WAYFIND_ERR_CLOSED'])
    expect(clock.pending).toBe(0)
    clock.advance(1_000_000)
    expect(ejections).toHaveLength(1)
    expect(poolOf(1)[0]!.requests).toHaveLength(6)
  })
})
