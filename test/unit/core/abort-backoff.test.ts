import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { raceSignal } from '../../../src/core/abort.js'
import { Backoff, jitterDown } from '../../../src/core/backoff.js'

describe('raceSignal', () => {
  it('settles like the promise and removes its abort listener', async () => {
    const ac = new AbortController()
    await expect(raceSignal(Promise.resolve(7), ac.signal)).resolves.toBe(7)
    await expect(raceSignal(Promise.reject(new Error('boom')), ac.signal)).rejects.toThrow('boom')
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0)
  })

  it("rejects with the signal's reason when it aborts first, or already has", async () => {
    const ac = new AbortController()
    const never = new Promise<never>(() => undefined)
    const raced = raceSignal(never, ac.signal)
    const reason = new Error('stop')
    ac.abort(reason)
    await expect(raced).rejects.toBe(reason)
    await expect(raceSignal(Promise.resolve(1), ac.signal)).rejects.toBe(reason)
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0)
  })
})

describe('jitterDown', () => {
  it('takes up to `jitter` of the ceiling off, and Backoff uses the same formula', () => {
    expect(jitterDown(1_000, 0.5, () => 0)).toBe(1_000)
    expect(jitterDown(1_000, 0.5, () => 0.999_999)).toBe(500)
    expect(jitterDown(1_000, 0.2, () => 0.5)).toBe(900)
    const b = new Backoff({ initialMs: 100, maxMs: 1_000, random: () => 0.5 })
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([
      jitterDown(100, 0.5, () => 0.5),
      jitterDown(200, 0.5, () => 0.5),
      jitterDown(400, 0.5, () => 0.5),
      jitterDown(800, 0.5, () => 0.5),
      jitterDown(1_000, 0.5, () => 0.5),
    ])
  })
})
