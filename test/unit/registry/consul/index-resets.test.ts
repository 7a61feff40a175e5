/**
 * The provider-wide index reset (src/registry/consul/index-resets.ts) as one watch sees it,
 * against a scripted node:http agent on port 0 that parks every request until the test answers
 * it. The provider's other watches are stood in for by the test: it announces regressions on
 * the hub, and listens to what the watch announces.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { WayfindError } from '../../../../src/errors.js'
import { ConsulHttp } from '../../../../src/registry/consul/http.js'
import { IndexResets, type IndexResetTarget } from '../../../../src/registry/consul/index-resets.js'
import { parseConsulOptions } from '../../../../src/registry/consul/options.js'
import { SlotGate } from '../../../../src/registry/consul/slot-gate.js'
import { ConsulServiceWatch } from '../../../../src/registry/consul/watch.js'
import type { TimerHandle } from '../../../../src/core/clock.js'
import { FakeClock } from '../../../support/fake-clock.js'
import { withDeadline } from '../../../support/wait.js'

interface Parked {
  readonly index: string | null
  /** Resolves when the client gave up on this request (aborted it). */
  readonly abandoned: Promise<void>
  answer(index: string, body: unknown, status?: number): void
}

/** A fake clock that resolves `armed` once the loop set a timer on it (a backoff delay here). */
class ArmedClock extends FakeClock {
  #arm: () => void = () => {}
  readonly armed = new Promise<void>((resolve) => {
    this.#arm = resolve
  })

  override setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = super.setTimeout(fn, ms)
    this.#arm()
    return handle
  }
}

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function entry(id: string): Record<string, unknown> {
  return {
    Node: { Node: 'node-1', Address: '127.0.0.1', Datacenter: 'dc1', Meta: {} },
    Service: { ID: id, Service: 'orders', Tags: [], Address: '', Meta: {}, Port: 7000 },
    Checks: [],
  }
}

async function start(): Promise<{
  request(n: number): Promise<Parked>
  requests: Parked[]
  errors: WayfindError[]
  resets: IndexResets
  /** Stands for the provider's other watches: what the watch announced to them. */
  other: IndexResetTarget
  announced: bigint[]
  clock: ArmedClock
}> {
  const requests: Parked[] = []
  const waiters: (() => void)[] = []
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent')
    requests.push({
      index: url.searchParams.get('index'),
      abandoned: new Promise<void>((resolve) => {
        res.on('close', () => {
          if (!res.writableFinished) resolve()
        })
      }),
      answer: (index, body, status = 200) => {
        res.writeHead(status, { 'Content-Type': 'application/json', 'X-Consul-Index': index })
        res.end(typeof body === 'string' ? body : JSON.stringify(body))
      },
    })
    for (const w of waiters.splice(0)) w()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const options = parseConsulOptions({
    url: `http://127.0.0.1:${port}`,
    waitMs: 10_000,
    random: () => 0,
    backoff: { initialMs: 1_000, maxMs: 1_000 },
  })
  const clock = new ArmedClock()
  const httpClient = new ConsulHttp(options)
  const gate = new SlotGate(httpClient.watchCapacity, options.rotationMs)
  const resets = new IndexResets()
  const announced: bigint[] = []
  const other: IndexResetTarget = { resetAbove: (to) => announced.push(to) }
  resets.join(other)
  const ac = new AbortController()
  cleanups.push(async () => {
    ac.abort()
    await httpClient.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const errors: WayfindError[] = []
  gate.join()
  const watch = new ConsulServiceWatch(
    'orders',
    { onSnapshot: () => {}, onError: (e) => errors.push(e) },
    ac.signal,
    { http: httpClient, gate, options, clock, resets },
  )
  resets.join(watch)
  watch.start()
  const request = (n: number): Promise<Parked> =>
    withDeadline(
      new Promise<Parked>((resolve) => {
        const check = (): void => {
          const r = requests[n]
          if (r === undefined) waiters.push(check)
          else resolve(r)
        }
        check()
      }),
      5_000,
      `request #${n}`,
    )
  return { request, requests, errors, resets, other, announced, clock }
}

describe('Consul watch: provider-wide index resets', () => {
  it('wakes a long poll above the announced index and re-reads from 0, without an error', async () => {
    const w = await start()
    ;(await w.request(0)).answer('50', [entry('a')])
    const poll = await w.request(1)
    expect(poll.index).toBe('50')
    w.resets.regressed(10n, w.other, w.resets.epoch)
    await withDeadline(poll.abandoned, 5_000, 'the long poll aborted')
    const plain = await w.request(2)
    expect(plain.index).toBeNull()
    plain.answer('11', [entry('a')])
    expect((await w.request(3)).index).toBe('11')
    expect(w.errors).toEqual([])
    // Told by another watch: nothing to pass on.
    expect(w.announced).toEqual([])
  })

  it('leaves a long poll at or below the announced index parked', async () => {
    const w = await start()
    ;(await w.request(0)).answer('50', [entry('a')])
    const poll = await w.request(1)
    w.resets.regressed(50n, w.other, w.resets.epoch)
    // Still parked: the timeout's answer (same index) arrives and the index is kept.
    poll.answer('50', [entry('a')])
    expect((await w.request(2)).index).toBe('50')
    expect(w.errors).toEqual([])
  })

  it('does not block on an answer above the announced index to a read in flight during the reset', async () => {
    const w = await start()
    ;(await w.request(0)).answer('50', [entry('a')])
    const poll = await w.request(1)
    // The restore went to 60: the poll on 50 stays, but its answer of 70 may predate it.
    w.resets.regressed(60n, w.other, w.resets.epoch)
    poll.answer('70', [entry('b')])
    expect((await w.request(2)).index).toBeNull()
  })

  it('announces its own regression to the other watches', async () => {
    const w = await start()
    ;(await w.request(0)).answer('50', [entry('a')])
    ;(await w.request(1)).answer('5', [entry('a')])
    expect((await w.request(2)).index).toBeNull()
    expect(w.announced).toEqual([5n])
  })

  it('announces a plain read after an error that answers below the index held before', async () => {
    const w = await start()
    ;(await w.request(0)).answer('50', [entry('a')])
    ;(await w.request(1)).answer('50', 'No cluster leader', 500)
    await withDeadline(w.clock.armed, 5_000, 'the backoff timer')
    expect(w.errors).toHaveLength(1)
    w.clock.advance(1_000)
    const plain = await w.request(2)
    expect(plain.index).toBeNull()
    plain.answer('3', [entry('a')])
    expect((await w.request(3)).index).toBe('3')
    expect(w.announced).toEqual([3n])
  })

  it('ignores a late report of a restore it already re-based after, not a new one', async () => {
    const w = await start()
    ;(await w.request(0)).answer('50', [entry('a')])
    const first = await w.request(1)
    const staleEpoch = w.resets.epoch
    w.resets.regressed(10n, w.other, staleEpoch)
    await withDeadline(first.abandoned, 5_000, 'the long poll aborted')
    const plain = await w.request(2)
    expect(plain.index).toBeNull()
    plain.answer('11', [entry('a')])
    const poll = await w.request(3)
    expect(poll.index).toBe('11')
    // Another watch released by the same restore reports it late (its read started before the
    // first report): this watch re-based since, so its poll stays parked.
    w.resets.regressed(5n, w.other, staleEpoch)
    poll.answer('11', [entry('a')])
    const next = await w.request(4)
    expect(next.index).toBe('11')
    // A regression seen by a read that started after the last report is a new one.
    w.resets.regressed(5n, w.other, w.resets.epoch)
    await withDeadline(next.abandoned, 5_000, 'the long poll aborted')
    expect((await w.request(5)).index).toBeNull()
    expect(w.errors).toEqual([])
  })

  it('announces a plain read that answers below its last index, whatever led to the read', async () => {
    const w = await start()
    ;(await w.request(0)).answer('50', [entry('a')])
    // A healthy set that turns empty is confirmed by a plain read: that read sees the restore.
    ;(await w.request(1)).answer('51', [])
    const confirm = await w.request(2)
    expect(confirm.index).toBeNull()
    confirm.answer('4', [entry('a')])
    expect((await w.request(3)).index).toBe('4')
    expect(w.announced).toEqual([4n])
  })

  it('stops telling a watch once it left', () => {
    const resets = new IndexResets()
    const seen: bigint[] = []
    const source: IndexResetTarget = { resetAbove: (to) => seen.push(-to) }
    resets.join(source)
    const leave = resets.join({ resetAbove: (to) => seen.push(to) })
    resets.regressed(4n, source, resets.epoch)
    leave()
    resets.regressed(3n, source, resets.epoch)
    // The announcing watch is not told its own news.
    expect(seen).toEqual([4n])
  })
})
