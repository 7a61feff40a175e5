import { describe, expect, it } from 'vitest'
import { decayFactor, DefaultLoadTracker } from '../../../src/balancer/load-tracker.js'
import { InvalidOptionError } from '../../../src/errors.js'
import { FakeClock } from './helpers.js'

describe('DefaultLoadTracker', () => {
  it('counts in-flight up at start and down at end, never below zero', () => {
    const t = new DefaultLoadTracker({ clock: new FakeClock() })
    t.start('a')
    t.start('a')
    t.start('b')
    expect(t.record('a').inflight).toBe(2)
    t.end('a', 'success')
    expect(t.record('a').inflight).toBe(1)
    t.end('a', 'cancelled')
    t.end('a', 'cancelled')
    expect(t.record('a').inflight).toBe(0)
    expect(t.record('b').inflight).toBe(1)
  })

  it('counts consecutive failures and resets them on success, not on cancel', () => {
    const t = new DefaultLoadTracker({ clock: new FakeClock() })
    for (let i = 0; i < 3; i++) {
      t.start('a')
      t.end('a', 'failure')
    }
    t.start('a')
    t.end('a', 'cancelled')
    expect(t.record('a').consecutiveFailures).toBe(3)
    t.start('a')
    t.end('a', 'success')
    expect(t.record('a').consecutiveFailures).toBe(0)
  })

  it('peak-EWMA: default RTT first, peaks adopted at once, decays with time', () => {
    const clock = new FakeClock()
    const t = new DefaultLoadTracker({ clock, decayMs: 10_000, defaultRttMs: 30 })
    const r = t.record('a')
    expect(r.latencyMs(clock.now())).toBe(30)
    t.observe('a', 10)
    expect(r.latencyMs(clock.now())).toBe(10)
    t.observe('a', 100)
    expect(r.latencyMs(clock.now())).toBe(100)
    clock.advance(10_000)
    expect(r.latencyMs(clock.now())).toBeCloseTo(100 / Math.E, 6)
    // A lower sample blends in with weight 1 - e^-1.
    t.observe('a', 20)
    expect(r.latencyMs(clock.now())).toBeCloseTo(100 / Math.E + 20 * (1 - 1 / Math.E), 6)
  })

  it('keeps a deleted key slot until its last call ends, so a new key never inherits a decrement', () => {
    const t = new DefaultLoadTracker({ clock: new FakeClock() })
    const slot = t.start('old')
    t.delete('old')
    expect(t.has('old')).toBe(false)
    const fresh = t.record('new')
    expect(fresh.slot).not.toBe(slot)
    t.start('new')
    t.endSlot(slot, 'success')
    expect(fresh.inflight).toBe(1)
    // The slot is free now and gets reused.
    expect(t.record('newer').slot).toBe(slot)
    expect(t.record('newer').inflight).toBe(0)
  })

  it('prunes keys not in the live set and grows past its initial capacity', () => {
    const t = new DefaultLoadTracker({ clock: new FakeClock() })
    for (let i = 0; i < 100; i++) t.start(`k${i}`)
    expect(t.size).toBe(100)
    expect(t.record('k99').inflight).toBe(1)
    t.prune(new Set(['k1', 'k2']))
    expect(t.size).toBe(2)
    expect(t.record('k1').inflight).toBe(1)
  })

  it('rejects invalid options', () => {
    expect(() => new DefaultLoadTracker({ decayMs: 0 })).toThrow(InvalidOptionError)
    expect(() => new DefaultLoadTracker({ defaultRttMs: Number.NaN })).toThrow(InvalidOptionError)
  })
})

describe('decayFactor', () => {
  it('matches Math.exp(-x) to 1e-9 relative, on both sides of the series cut-over', () => {
    for (const x of [0, 1e-9, 1e-6, 5e-4, 9.99e-4, 1e-3, 0.01, 0.5, 3, 40]) {
      const exact = Math.exp(-x)
      expect(Math.abs(decayFactor(x) - exact) / exact).toBeLessThan(1e-9)
    }
  })

  it('times every call to an idle instance and 1 in 8 per busy instance', () => {
    const t = new DefaultLoadTracker({ clock: new FakeClock() })
    const a = t.record('a').slot
    const b = t.record('b').slot
    expect([t.shouldTime(a, 7), t.shouldTime(a, 7)]).toEqual([true, true]) // idle: always
    t.startSlot(a)
    t.startSlot(b)
    const timedA = Array.from({ length: 16 }, () => t.shouldTime(a, 7))
    expect(timedA.filter(Boolean)).toHaveLength(2)
    expect(timedA.indexOf(true)).toBe(7)
    // Counted per instance: a's calls do not move b's turn.
    const timedB = Array.from({ length: 8 }, () => t.shouldTime(b, 7))
    expect(timedB.indexOf(true)).toBe(7)
    expect(Array.from({ length: 16 }, () => t.shouldTime(b, 15)).filter(Boolean)).toHaveLength(1)
  })
})
