import { setMaxListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { SlotGate, type Slot } from '../../../../src/registry/consul/slot-gate.js'
import { TokenBucket } from '../../../../src/registry/consul/token-bucket.js'
import { FakeClock } from '../../../support/fake-clock.js'

describe('SlotGate', () => {
  it('grants up to capacity, then queues in FIFO order', async () => {
    const gate = new SlotGate(2, 10_000, new FakeClock())
    const signal = new AbortController().signal
    const a = await gate.acquire(signal)
    const b = await gate.acquire(signal)
    const order: string[] = []
    const c = gate.acquire(signal).then((s) => {
      order.push('c')
      return s
    })
    const d = gate.acquire(signal).then((s) => {
      order.push('d')
      return s
    })
    expect(gate.active).toBe(2)
    expect(gate.queued).toBe(2)
    a.release()
    a.release() // idempotent: frees one slot only
    await c
    expect(order).toEqual(['c'])
    expect(gate.queued).toBe(1)
    b.release()
    await d
    expect(order).toEqual(['c', 'd'])
  })

  it('removes an aborted waiter and rejects with the reason', async () => {
    const gate = new SlotGate(1, 10_000, new FakeClock())
    const held = await gate.acquire(new AbortController().signal)
    const ac = new AbortController()
    const waiting = gate.acquire(ac.signal)
    ac.abort(new Error('stop'))
    await expect(waiting).rejects.toThrow('stop')
    expect(gate.queued).toBe(0)
    held.release()
    expect(gate.active).toBe(0)
  })

  it('shortens the wait while oversubscribed, never below 1 s nor above the wait', async () => {
    const gate = new SlotGate(2, 10_000, new FakeClock())
    const signal = new AbortController().signal
    setMaxListeners(0, signal)
    expect(gate.fairWaitMs(300_000)).toBe(300_000)
    const slots: Slot[] = [await gate.acquire(signal), await gate.acquire(signal)]
    const waiters = Array.from({ length: 8 }, () => gate.acquire(signal))
    // demand 10, capacity 2 → 10 s × 2 / 10 = 2 s
    expect(gate.fairWaitMs(300_000)).toBe(2_000)
    expect(gate.fairWaitMs(1_500)).toBe(1_500)
    const more = Array.from({ length: 40 }, () => gate.acquire(signal))
    expect(gate.fairWaitMs(300_000)).toBe(1_000)
    gate.capacity = 100
    await Promise.all([...waiters, ...more])
    expect(gate.active).toBe(50)
    expect(gate.fairWaitMs(300_000)).toBe(300_000)
    for (const s of slots) s.release()
  })

  it('counts joined watches in the demand before they queue', () => {
    const gate = new SlotGate(4, 10_000, new FakeClock())
    for (let i = 0; i < 40; i++) gate.join()
    expect(gate.fairWaitMs(300_000)).toBe(1_000)
    for (let i = 0; i < 36; i++) gate.leave()
    expect(gate.fairWaitMs(300_000)).toBe(300_000)
  })

  it('asks a long poll started before the gate filled to yield once it had its fair share', async () => {
    const clock = new FakeClock()
    const gate = new SlotGate(1, 10_000, clock)
    const signal = new AbortController().signal
    const slot = await gate.acquire(signal)
    let yielded = 0
    slot.hold(300_000, () => {
      yielded++
    })
    clock.advance(60_000)
    expect(yielded).toBe(0) // nobody waits: keep blocking
    const next = gate.acquire(signal)
    // demand 2, capacity 1 → fair wait 5 s, already exceeded → yield now
    clock.advance(0)
    expect(yielded).toBe(1)
    slot.release()
    const second = await next
    second.hold(5_000, () => {
      yielded++
    })
    const third = gate.acquire(signal)
    clock.advance(10_000)
    // the second poll asked for no more than its fair share: it ends on its own, no yield
    expect(yielded).toBe(1)
    second.release()
    ;(await third).release()
    expect(clock.pending).toBe(0)
  })
})

describe('TokenBucket', () => {
  it('lets a burst through, then paces at one token per refill', async () => {
    const clock = new FakeClock()
    const bucket = new TokenBucket(2, 1_000, clock)
    const signal = new AbortController().signal
    await bucket.take(signal)
    await bucket.take(signal)
    expect(bucket.delayMs()).toBe(1_000)
    let done = false
    const p = bucket.take(signal).then(() => {
      done = true
    })
    clock.advance(999)
    await Promise.resolve()
    expect(done).toBe(false)
    clock.advance(1)
    await p
    expect(done).toBe(true)
    clock.advance(10_000)
    expect(bucket.tokens).toBe(2) // never above the burst
  })

  it('rejects a pending take when the signal aborts', async () => {
    const clock = new FakeClock()
    const bucket = new TokenBucket(1, 60_000, clock)
    await bucket.take(new AbortController().signal)
    const ac = new AbortController()
    const p = bucket.take(ac.signal)
    ac.abort(new Error('closed'))
    await expect(p).rejects.toThrow('closed')
    expect(clock.pending).toBe(0)
  })
})
